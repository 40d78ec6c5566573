"""Text channels (models/messages.py): raw RFC 822 / MIME emails parsed with the standard library (encoded-word
subjects, quoted-printable and base64 bodies, multipart/alternative, HTML-only, GBK), quoted replies removed, and the
text the pipeline reads for chat, WeChat and email."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email.message import EmailMessage

import pytest

from models.messages import html_to_text, message_text, parse_email, strip_quoted

PLAIN = """\
From: =?utf-8?b?5p2O6Zu3?= <li.lei@example.com>
To: service@hotline.example
Subject: =?utf-8?b?5oqV6K+J77ya5b+r6YCS5LiA5ZGo5rKh5Yiw?=
Date: Tue, 01 Dec 2026 10:30:00 +0800
Message-ID: <abc123@mail.example.com>
MIME-Version: 1.0
Content-Type: text/plain; charset="utf-8"
Content-Transfer-Encoding: quoted-printable

=E6=88=91=E7=9A=84=E8=AE=A2=E5=8D=95=E5=8F=B7=E6=98=AF 12345678=EF=BC=8C=E5=BF=AB=E9=80=92=E4=B8=80=E5=91=A8=
=E6=B2=A1=E5=88=B0=E3=80=82
"""


def test_a_plain_quoted_printable_email_with_an_encoded_word_subject():
    m = parse_email(PLAIN)
    assert m.subject == "投诉：快递一周没到"
    assert m.body == "我的订单号是 12345678，快递一周没到。"
    assert (m.sender, m.sender_name, m.message_id) == ("li.lei@example.com", "李雷", "abc123@mail.example.com")
    assert m.sent_at == datetime(2026, 12, 1, 10, 30, tzinfo=timezone(timedelta(hours=8)))
    assert m.html is False and m.attachments == ()
    assert parse_email(PLAIN.encode("ascii")) == m


def _multipart(plain: str | None, html: str | None, attach: bool = False) -> bytes:
    msg = EmailMessage()
    msg["From"] = "王芳 <wang.fang@example.cn>"
    msg["To"] = "service@hotline.example"
    msg["Subject"] = "回复：退款还没到账"
    msg["Date"] = "Wed, 02 Dec 2026 09:00:00 +0800"
    msg["Message-ID"] = "<r2@example.cn>"
    if plain is not None:
        msg.set_content(plain, cte="base64")
        if html is not None:
            msg.add_alternative(html, subtype="html")
    else:
        msg.set_content(html, subtype="html", cte="base64")
    if attach:
        msg.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="发票.pdf")
    return msg.as_bytes()


def test_multipart_alternative_prefers_the_plain_part_and_lists_attachments():
    raw = _multipart("退款申请提交十天了还没到账，手机13800138000。", "<p>HTML 版本</p>", attach=True)
    m = parse_email(raw)
    assert m.body == "退款申请提交十天了还没到账，手机13800138000。" and m.html is False
    assert m.attachments == ("发票.pdf",) and m.sender == "wang.fang@example.cn" and m.sender_name == "王芳"


def test_an_html_only_email_becomes_text():
    html = ("<html><head><style>p{color:red}</style><title>x</title></head><body><p>您好，</p>"
            "<div>空调坏了&nbsp;三次&amp;还没修好<br>请尽快处理</div><script>alert(1)</script>"
            "<blockquote>之前的邮件内容</blockquote></body></html>")
    m = parse_email(_multipart(None, html))
    assert m.html is True
    assert m.body == "您好，\n空调坏了 三次&还没修好\n请尽快处理\n> 之前的邮件内容"
    assert m.text == "退款还没到账\n您好，\n空调坏了 三次&还没修好\n请尽快处理"


def test_gb2312_declared_gbk_written_is_read():
    body = "我的冰箱不制冷，型号BCD-215。".encode("gbk")
    raw = (b"From: a@example.com\r\nSubject: =?gb2312?b?" + __import__("base64").b64encode("冰箱坏了".encode("gb2312"))
           + b"?=\r\nContent-Type: text/plain; charset=gb2312\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + body)
    m = parse_email(raw)
    assert m.subject == "冰箱坏了" and m.body == "我的冰箱不制冷，型号BCD-215。"
    assert m.sent_at is None and m.message_id is None


def test_something_that_is_not_an_email_is_a_clear_error():
    for raw in ("我要投诉你们的快递太慢了", "", b"\x00\x01binary", "just some words\nand more"):
        with pytest.raises(ValueError, match="not an email: no headers"):
            parse_email(raw)
    with pytest.raises(TypeError):
        parse_email(123)  # type: ignore[arg-type]


REPLY = """我上周的投诉到现在还没有人联系我，请尽快处理！
电话：13912345678

在 2026年11月24日 10:02，客服中心 <service@hotline.example> 写道：
> 您好，您的投诉已受理，我们会在48小时内联系您。
> 客服中心
"""

OUTLOOK = """退款的事情怎么样了？

________________________________
发件人: 客服中心 <service@hotline.example>
发送时间: 2026年11月24日 10:02
收件人: 王芳
主题: 回复: 退款

您好，已为您提交退款申请。
"""

QQ = """好的，谢谢。
------------------ 原始邮件 ------------------
发件人: "客服中心"<service@hotline.example>;
发送时间: 2026年11月24日(星期二) 上午10:02
您好，已处理。
"""

ENGLISH = """Still not fixed.

On Tue, Nov 24, 2026 at 10:02 AM Service <service@hotline.example> wrote:
> We have logged your complaint.
"""


def test_quoted_replies_are_removed_and_the_signature_kept():
    assert strip_quoted(REPLY) == "我上周的投诉到现在还没有人联系我，请尽快处理！\n电话：13912345678"
    assert strip_quoted(OUTLOOK) == "退款的事情怎么样了？"
    assert strip_quoted(QQ) == "好的，谢谢。"
    assert strip_quoted(ENGLISH) == "Still not fixed."
    assert strip_quoted("没有引用\n\n\n\n第二段") == "没有引用\n\n第二段"
    assert strip_quoted("发件人说他很生气") == "发件人说他很生气"  # not a header block


def test_message_text_per_channel():
    assert message_text("chat", "  我的快递 一周没到  ") == "我的快递 一周没到"
    assert message_text("wechat", "[捂脸]空调又坏了[发怒][发怒]，订单123") == "空调又坏了，订单123"
    raw = ("From: li.lei@example.com\nSubject: Re: 回复：快递一周没到\nContent-Type: text/plain; charset=gbk\n"
           "Content-Transfer-Encoding: 8bit\n\n" + REPLY)  # a str: already decoded, whatever the header says
    text = message_text("email", raw)
    assert text.startswith("快递一周没到\n我上周的投诉到现在还没有人联系我")
    assert "写道" not in text and "已受理" not in text and "13912345678" in text
    assert message_text("email", REPLY) == strip_quoted(REPLY)  # a body without headers is taken as the body
    assert message_text("email", PLAIN.encode()) == "投诉：快递一周没到\n我的订单号是 12345678，快递一周没到。"


def test_message_text_errors():
    with pytest.raises(ValueError, match="not a text channel"):
        message_text("phone", "x")
    with pytest.raises(ValueError, match="has no text"):
        message_text("chat", "   ")
    with pytest.raises(ValueError, match="has no text"):
        message_text("wechat", "[微笑]")


def test_html_to_text_survives_broken_markup():
    assert html_to_text("<p>未闭合<div>标签") == "未闭合\n标签"
