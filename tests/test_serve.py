"""`hotline serve`'s preparation (training/serve.py): the quick intent recipe, developer keys, the printout."""

from __future__ import annotations

import stat

from training.config import CONFIG_ROOT, load_config


def _plain(node):
    return {k: _plain(v) for k, v in node.items()} if hasattr(node, "items") else node


def test_quick_intent_recipe_changes_only_size_and_epochs():
    full = _plain(load_config(CONFIG_ROOT / "intent.yaml"))
    quick = _plain(load_config(CONFIG_ROOT / "intent_quick.yaml"))
    assert quick["data"]["n_train"] < full["data"]["n_train"]
    assert quick["trainer"]["max_epochs"] < full["trainer"]["max_epochs"]
    assert quick["refit"]["enabled"] is False
    assert quick["name"] == "intent"  # same experiment and registered model: the full recipe replaces it on merit
    for node in ("model", "optim", "calibration", "evaluation"):
        assert quick[node] == full[node], node
    changed_data = {k for k in full["data"] if quick["data"][k] != full["data"][k]}
    assert changed_data == {"n_train", "n_validation", "n_test"}


def _keys(tmp_path, monkeypatch):
    from training import serve

    monkeypatch.setattr(serve, "REPO", tmp_path)
    files = {"platform": tmp_path / "var" / "dev-key", "supervisor": tmp_path / "var" / "dev-key.supervisor"}
    url = f"sqlite:///{tmp_path / 'hotline.db'}"
    return serve, files, url


def test_dev_keys_are_created_once_kept_private_and_replaced_when_revoked(tmp_path, monkeypatch):
    from serving.store import Store

    serve, files, url = _keys(tmp_path, monkeypatch)
    first = serve.ensure_dev_keys(url, files)
    assert {r: new for r, (_, new) in first.items()} == {"platform": True, "supervisor": True}
    for role, path in files.items():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_text().strip() == first[role][0]
    with Store(url) as store:
        assert store.verify_key(first["platform"][0]).role == "platform"
        assert store.verify_key(first["supervisor"][0]).role == "supervisor"

    again = serve.ensure_dev_keys(url, files)  # a second `make serve` keeps the keys
    assert again == {r: (s, False) for r, (s, _) in first.items()}

    with Store(url) as store:  # revoked: a new key, the file rewritten
        store.revoke_key(store.verify_key(first["platform"][0]).id)
    third = serve.ensure_dev_keys(url, files)
    assert third["platform"][1] is True and third["platform"][0] != first["platform"][0]
    assert third["supervisor"] == (first["supervisor"][0], False)
    assert files["platform"].read_text().strip() == third["platform"][0]

    files["supervisor"].unlink()  # missing file: a new key
    fourth = serve.ensure_dev_keys(url, files)
    assert fourth["supervisor"][1] is True and files["supervisor"].exists()
    with Store(url) as store:
        assert len(store.list_keys(include_revoked=False)) == 3  # the unreadable old supervisor key stays live


def test_banner_names_url_key_and_a_working_curl():
    from training.serve import banner

    text = banner("127.0.0.1", 3000, {"platform": ("hl_secret", True), "supervisor": ("hl_super", False)})
    assert "http://127.0.0.1:3000" in text and "hl_secret" in text and "hl_super" in text
    curl = next(line for line in text.splitlines() if "curl -s" in line)
    assert "Authorization: Bearer $(cat var/dev-key)" in curl
    assert "-F text=我的快递一个星期了还没到，我要投诉" in curl and curl.rstrip().endswith("http://127.0.0.1:3000/route")
    assert "hotline keys create --role" in text
