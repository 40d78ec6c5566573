"""Text channels: what the pipeline reads from a chat, WeChat or email message.

- :func:`parse_email` reads raw RFC 822 / MIME (``str`` or ``bytes``) with the standard library's ``email`` package
  and ``email.policy.default``: encoded-word subjects (``=?utf-8?b?...?=``), quoted-printable and base64 bodies,
  multipart/alternative (text/plain preferred, HTML turned into text when it is the only body), GB2312 declared but
  GBK/GB18030 written (read as GB18030, a superset). Input that is not an email (no headers) is a ValueError.
- :func:`strip_quoted` drops quoted replies: ``>`` lines, attribution lines ("在 2026年12月1日 ... 写道：",
  "On ... wrote:") and everything after a forwarded/original-message header block (QQ Mail/Foxmail
  "------ 原始邮件 ------", Outlook "发件人: ... 发送时间: ...").
- :func:`message_text` is the text the understanding step gets for a message of a channel: chat and WeChat the text
  (WeChat's emoticon codes such as ``[微笑]`` dropped), email the subject and the body without quoted replies.

The caller of an email is its sender address (:attr:`ParsedEmail.sender`); a phone number in the signature is left in
the body for the slot filler, which finds it like any other. Pure standard library; no models.
"""

from __future__ import annotations

import email
import re
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.utils import parseaddr, parsedate_to_datetime
from html import unescape
from html.parser import HTMLParser
from typing import Any

TEXT_CHANNELS: tuple[str, ...] = ("chat", "email", "wechat")
_EMAIL_HEADERS = ("from", "subject", "date", "to", "message-id", "mime-version", "content-type")


@dataclass(frozen=True)
class ParsedEmail:
    subject: str  # decoded ("" when absent)
    body: str  # text/plain preferred; HTML turned into text when it is the only body; quoted replies kept
    sender: str | None  # the From address (addr-spec), e.g. "li.lei@example.com": the ticket's caller
    sender_name: str | None  # the From display name, decoded
    sent_at: datetime | None  # the Date header (aware when the header has a zone)
    message_id: str | None  # the Message-ID header, without angle brackets
    attachments: tuple[str, ...] = ()  # attachment file names (not read)
    html: bool = False  # the body came from HTML

    @property
    def text(self) -> str:
        """What the pipeline reads: :func:`email_text` of this message."""
        return email_text(self.subject, self.body)


# -- HTML -------------------------------------------------------------------------------------------------
class _TextOfHtml(HTMLParser):
    _BLOCK = {"br", "p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "table", "blockquote", "hr", "ul",
              "ol", "section", "article", "header", "footer"}
    _SKIP = {"script", "style", "head", "title"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0
        self._quote = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in self._SKIP:
            self._skip += 1
        elif tag == "blockquote":
            self._quote += 1
        if tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self._skip:
            self._skip -= 1
        elif tag == "blockquote" and self._quote:
            self._quote -= 1
        if tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._quote:  # quoted reply in HTML: mark its lines as quoted, as plain-text mail does
            data = "\n".join("> " + line if line.strip() else line for line in data.split("\n"))
        self.parts.append(data)


def html_to_text(html: str) -> str:
    """Visible text of an HTML body: tags dropped, entities decoded, block elements as line breaks (no blank lines),
    scripts and styles dropped, ``<blockquote>`` lines prefixed with ``>`` (so :func:`strip_quoted` drops them)."""
    p = _TextOfHtml()
    try:
        p.feed(html)
        p.close()
        text = "".join(p.parts)
    except Exception:  # noqa: BLE001 - a broken page still gives its text
        text = unescape(re.sub(r"<[^>]+>", " ", html))
    lines = [re.sub(r"[ \t\u00a0\u3000]+", " ", line).strip() for line in text.splitlines()]
    return "\n".join(line for line in lines if line)


# -- email ------------------------------------------------------------------------------------------------
def _content(part: EmailMessage, from_text: bool = False) -> str:
    charset = (part.get_content_charset() or "").lower()
    if from_text and str(part.get("content-transfer-encoding", "7bit")).strip().lower() in ("7bit", "8bit", "binary"):
        # given as str: its characters are already decoded, whatever charset the header declares
        payload = part.get_payload(decode=True) or b""
        return payload.decode("utf-8", errors="replace")
    if charset in ("gb2312", "gbk", "x-gbk", "gb_2312-80"):
        payload = part.get_payload(decode=True) or b""
        return payload.decode("gb18030", errors="replace")
    try:
        return part.get_content()
    except (LookupError, UnicodeDecodeError, KeyError):  # an unknown or wrong charset: UTF-8, replacing errors
        payload = part.get_payload(decode=True) or b""
        return payload.decode("utf-8", errors="replace")


def parse_email(raw: str | bytes) -> ParsedEmail:
    """A raw RFC 822 / MIME message -> :class:`ParsedEmail`. ValueError when ``raw`` has no email headers."""
    if isinstance(raw, (bytes, bytearray)):
        msg = email.message_from_bytes(bytes(raw), policy=policy.default)
    elif isinstance(raw, str):  # as UTF-8 bytes: a str with non-ASCII 8bit text parses as it reads
        msg = email.message_from_bytes(raw.encode("utf-8", errors="surrogateescape"), policy=policy.default)
    else:
        raise TypeError(f"parse_email takes str or bytes, got {type(raw).__name__}")
    present = {k.lower() for k in msg.keys()}
    if not present & set(_EMAIL_HEADERS):
        raise ValueError("not an email: no headers (From, Subject, Date, ...) before the body; give the raw RFC 822 "
                         "message, or send the text as channel 'chat'")
    subject = str(msg.get("subject", "") or "").strip()

    sender = sender_name = None
    try:
        frm = msg.get("from")
        addresses = getattr(frm, "addresses", ()) if frm is not None else ()
        if addresses:
            sender = addresses[0].addr_spec or None
            sender_name = addresses[0].display_name or None
    except Exception:  # noqa: BLE001 - a malformed From header: fall back to the plain parser
        addresses = ()
    if sender is None and msg.get("from") is not None:
        name, addr = parseaddr(str(msg.get("from")))
        sender, sender_name = addr or None, sender_name or name or None

    sent_at = None
    date = msg.get("date")
    if date is not None:
        sent_at = getattr(date, "datetime", None)
        if sent_at is None:
            try:
                sent_at = parsedate_to_datetime(str(date))
            except (TypeError, ValueError, IndexError):
                sent_at = None
    mid = msg.get("message-id")
    message_id = str(mid).strip().strip("<>").strip() or None if mid is not None else None

    body, is_html = "", False
    part = msg.get_body(preferencelist=("plain", "html"))
    if part is not None:
        body = _content(part, from_text=isinstance(raw, str))
        if part.get_content_subtype() == "html":
            body, is_html = html_to_text(body), True
    elif not msg.is_multipart() and msg.get_content_maintype() == "text":
        body = _content(msg, from_text=isinstance(raw, str))
    attachments = tuple(a.get_filename() or "(unnamed)" for a in msg.iter_attachments()
                        if a.get_content_disposition() == "attachment")
    body = body.replace("\r\n", "\n").strip()
    return ParsedEmail(subject=subject, body=body, sender=sender, sender_name=sender_name, sent_at=sent_at,
                       message_id=message_id, attachments=attachments, html=is_html)


# -- quoted replies -----------------------------------------------------------------------------------------
_ATTRIBUTION = re.compile(r"^\s*(在.{0,120}写道\s*[:：]?\s*$|On\s.{0,200}\swrote:\s*$|.{0,120}于.{0,80}写道\s*[:：]\s*$)",
                          re.IGNORECASE)
_SEPARATOR = re.compile(r"^\s*[-_=]{2,}\s*(原始邮件|原邮件|转发邮件|转发的邮件|Original Message|Forwarded message)\s*[-_=]{2,}\s*$",
                        re.IGNORECASE)
_HEADER_FROM = re.compile(r"^\s*\*?(发件人|From)\s*\*?\s*[:：]", re.IGNORECASE)
_HEADER_NEXT = re.compile(r"^\s*\*?(发送时间|时间|日期|收件人|抄送|主题|Sent|Date|To|Cc|Subject)\s*\*?\s*[:：]", re.IGNORECASE)
_SUBJECT_PREFIX = re.compile(r"^\s*((re|fw|fwd|aw|回复|答复|转发)\s*[:：]\s*)+", re.IGNORECASE)


def strip_quoted(text: str) -> str:
    """``text`` without quoted replies: ``>`` lines and attribution lines dropped; everything from a forwarded /
    original-message header block on cut off. What is left is trimmed, with at most one blank line in a row."""
    lines = text.replace("\r\n", "\n").split("\n")
    kept: list[str] = []
    for i, line in enumerate(lines):
        if _SEPARATOR.match(line):
            break
        if _HEADER_FROM.match(line) and any(_HEADER_NEXT.match(n) for n in lines[i + 1:i + 4]):
            break
        if line.lstrip().startswith((">", "＞")) or _ATTRIBUTION.match(line):
            continue
        kept.append(line.rstrip())
    while kept and re.fullmatch(r"\s*[-_=*]{5,}\s*", kept[-1] or "x"):  # a rule left above a cut-off header block
        kept.pop()
    return re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()


def email_text(subject: str, body: str) -> str:
    """Subject (without "Re:"/"回复：" prefixes) and body without quoted replies, one per line."""
    subject = _SUBJECT_PREFIX.sub("", subject or "").strip()
    body = strip_quoted(body or "")
    return "\n".join(p for p in (subject, body) if p)


_WECHAT_EMOTICON = re.compile(r"\[[\u4e00-\u9fff]{1,4}\]")


def message_text(channel: str, text: str | bytes) -> str:
    """The text the pipeline reads for a message of ``channel``.

    - ``chat``: the text, trimmed;
    - ``wechat``: the text without emoticon codes (``[微笑]``, ``[捂脸]``), trimmed;
    - ``email``: raw RFC 822 is parsed (:func:`parse_email`); text without email headers is taken as the body; then
      the subject and the body without quoted replies (:func:`email_text`).

    ValueError for another channel or a message with no text left."""
    if channel not in TEXT_CHANNELS:
        raise ValueError(f"channel {channel!r} is not a text channel; use one of {', '.join(TEXT_CHANNELS)} "
                         "(a call's text comes from its transcript)")
    if channel == "email":
        try:
            out = parse_email(text).text
        except ValueError:  # not raw RFC 822: the body as typed
            raw = text.decode("utf-8", errors="replace") if isinstance(text, (bytes, bytearray)) else text
            out = email_text("", raw)
    else:
        out = text.decode("utf-8", errors="replace") if isinstance(text, (bytes, bytearray)) else str(text)
        if channel == "wechat":
            out = _WECHAT_EMOTICON.sub("", out)
        out = re.sub(r"[ \t\u3000]+", " ", out).strip()
    if not out.strip():
        raise ValueError(f"the {channel} message has no text")
    return out
