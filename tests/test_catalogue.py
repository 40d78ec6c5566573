"""The product catalogue (models/catalogue.py): loading, unambiguous brand-keeping matches, the dev-chosen threshold."""

from __future__ import annotations

import pytest

from models.catalogue import (
    FUZZY_MIN_SIMILARITY,
    SAMPLE_CATALOGUE,
    Catalogue,
    CatalogueError,
    choose_threshold,
    default_catalogue,
    dev_pairs,
)


@pytest.fixture(scope="module")
def cat() -> Catalogue:
    return Catalogue.load(SAMPLE_CATALOGUE)


def test_sample_covers_the_training_lexicon_products(cat):
    from data.synth import lexicon as L

    names = {p.name for p in cat.products}
    assert {n for items in L.PRODUCTS.values() for n, _ in items} <= names


def test_exact_and_alias_matches(cat):
    assert cat.match("美的热水器").how == "exact"
    m = cat.match("爱疯")
    assert (m.product.name, m.how, m.product.brand, m.product.category) == ("苹果手机", "alias", "苹果", "phone")
    assert cat.match("IPHONE").product.id == "apple-phone"  # case folded
    assert cat.match("華為手機").product.name == "华为手机"  # traditional folded


def test_a_brand_is_never_replaced_added_or_dropped(cat):
    assert cat.match("方太热水器") is None
    d = cat.describe("方太热水器")
    assert (d.value, d.brand, d.brand_listed, d.category, d.catalogue_id) == ("方太热水器", "方太", False, "small", None)
    d = cat.describe("老板油烟机")
    assert (d.value, d.brand, d.catalogue_id) == ("老板油烟机", "老板", None)
    assert cat.match("格力冰箱") is None  # a listed brand, an unlisted product: not 格力空调 nor 海尔冰箱
    assert cat.match("热水器") is None  # no brand said: not 美的热水器


def test_misheard_characters_inside_a_listed_product_are_repaired(cat):
    for heard, name in (("美得热水器", "美的热水器"), ("小天鹅饿洗衣机", "小天鹅洗衣机"), ("奥克斯孔调", "奥克斯空调"),
                        ("台虱电脑", "台式电脑")):
        m = cat.match(heard)
        assert m is not None and m.how == "fuzzy" and m.product.name == name, heard


def test_ambiguous_fuzzy_matches_give_nothing():
    two = Catalogue.from_records([{"name": "甲牌电视机", "brand": "甲牌", "category": "tv"},
                                  {"name": "甲牌电视盒", "brand": "甲牌", "category": "tv"}])
    assert two.match("甲牌电视") is None
    assert two.match("甲牌电视机").product.name == "甲牌电视机"


def test_load_csv_and_yaml(tmp_path):
    f = tmp_path / "c.csv"
    f.write_text("id,name,brand,category,aliases\nx1,方太热水器,方太,small,方太燃气热水器|方太的热水器\nx2,机顶盒,,network,\n",
                 encoding="utf-8")
    c = Catalogue.load(f)
    assert c.match("方太的热水器").product.id == "x1" and c.products[1].brand is None
    y = tmp_path / "c.yaml"
    y.write_text("products:\n  - {name: 老板油烟机, brand: 老板, category: small, aliases: [老板抽油烟机]}\n", encoding="utf-8")
    assert Catalogue.load(y).match("老板抽油烟机").product.name == "老板油烟机"
    bad = tmp_path / "bad.csv"
    bad.write_text("name,category\n甲,乙\n", encoding="utf-8")
    with pytest.raises(CatalogueError, match="header lacks"):
        Catalogue.load(bad)
    with pytest.raises(CatalogueError, match="names both"):
        Catalogue.from_records([{"name": "甲", "category": "x", "aliases": ["乙"]}, {"name": "乙", "category": "x"}])


def test_default_catalogue_follows_the_environment(tmp_path, monkeypatch):
    assert default_catalogue().source == str(SAMPLE_CATALOGUE)
    y = tmp_path / "mine.yaml"
    y.write_text("products:\n  - {name: 甲牌冰箱, brand: 甲牌, category: fridge}\n", encoding="utf-8")
    monkeypatch.setenv("HOTLINE_CATALOGUE", str(y))
    assert [p.name for p in default_catalogue().products] == ["甲牌冰箱"]


def test_threshold_is_the_dev_lists_choice_and_the_dev_list_is_not_heldout(cat):
    from data.synth.heldout import heldout_products

    pairs = dev_pairs(cat)
    held = {n for n, *_ in heldout_products()} | {b for _, _, b, _ in heldout_products() if b}
    assert not any(h in span for span, _ in pairs for h in held)
    chosen, acc = choose_threshold(pairs, cat)
    assert chosen == FUZZY_MIN_SIMILARITY, acc
