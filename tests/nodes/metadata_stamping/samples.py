"""Small files of every supported type: real magic bytes for binary types, comment-able text for text types."""

from __future__ import annotations

BINARY: dict[str, bytes] = {
    "jpg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(64),
    "jpeg": b"\xff\xd8\xff\xe1\x00\x10Exif\x00" + bytes(64),
    "png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64),
    "gif": b"GIF89a\x01\x00\x01\x00" + bytes(64),
    "bmp": b"BM\x3a\x00\x00\x00" + bytes(64),
    "webp": b"RIFF\x24\x00\x00\x00WEBPVP8 " + bytes(64),
    "pdf": b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n",
    "doc": b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(64),
    "docx": b"PK\x03\x04\x14\x00\x06\x00" + bytes(22) + b"word/document.xml" + bytes(32),
    "mp3": b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(64),
    "wav": b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(64),
    "flac": b"fLaC\x00\x00\x00\x22" + bytes(64),
    "aac": b"\xff\xf1\x50\x80\x02\x1f\xfc" + bytes(64),
    "ogg": b"OggS\x00\x02" + bytes(64),
    "mp4": b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00" + bytes(64),
    "avi": b"RIFF\x24\x00\x00\x00AVI LIST" + bytes(64),
    "mkv": b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01matroska" + bytes(64),
    "mov": b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00" + bytes(64),
    "webm": b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01webm" + bytes(64),
    "zip": b"PK\x03\x04\x14\x00\x00\x00" + bytes(22) + b"hello.txt" + bytes(32),
    "tar": b"hello.txt".ljust(257, b"\x00") + b"ustar\x0000" + bytes(240),
    "gz": b"\x1f\x8b\x08\x00\x00\x00\x00\x00" + bytes(64),
    "rar": b"Rar!\x1a\x07\x01\x00" + bytes(64),
    "7z": b"7z\xbc\xaf\x27\x1c\x00\x04" + bytes(64),
}

TEXT: dict[str, str] = {
    "txt": "plain text\nsecond line\n",
    "md": "# Title\n\nSome *markdown*.\n",
    "py": "#!/usr/bin/env python3\nprint('hi')\n",
    "js": "console.log('hi');\n",
    "sql": "SELECT 1;\n",
    "css": "body { color: red; }\n",
    "html": "<!doctype html>\n<p>hi</p>\n",
    "yaml": "key: value\n",
    "xml": '<?xml version="1.0"?>\n<root/>\n',
    "crlf.txt": "windows\r\nline endings\r\n",
}
