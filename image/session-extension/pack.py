#!/usr/bin/env python3
"""Pack this folder's VS Code extension into a VSIX, byte for byte the same each time
(fixed order and timestamps), for both image recipes to install:

    python3 image/session-extension/pack.py OUT.vsix
"""

import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
FILES = ["package.json", "extension.js"]
STAMP = (1980, 1, 1, 0, 0, 0)
CONTENT_TYPES = """<?xml version="1.0" encoding="utf-8"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">
<Default Extension=".json" ContentType="application/json"/><Default Extension=".js" ContentType="application/javascript"/>
<Default Extension=".vsixmanifest" ContentType="text/xml"/></Types>
"""
MANIFEST = """<?xml version="1.0" encoding="utf-8"?>
<PackageManifest Version="2.0.0" xmlns="http://schemas.microsoft.com/developer/vsx-schema/2011">
<Metadata><Identity Language="en-US" Id="session" Version="1.0.0" Publisher="code-server-multi"/>
<DisplayName>Workspace session</DisplayName><Description xml:space="preserve">Log out of this workspace.</Description>
<Properties><Property Id="Microsoft.VisualStudio.Code.Engine" Value="^1.90.0"/></Properties></Metadata>
<Installation><InstallationTarget Id="Microsoft.VisualStudio.Code"/></Installation><Dependencies/>
<Assets><Asset Type="Microsoft.VisualStudio.Code.Manifest" Path="extension/package.json" Addressable="true"/></Assets>
</PackageManifest>
"""


def add(z: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, STAMP)
    info.external_attr = 0o644 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    z.writestr(info, data)


def main(out: str) -> None:
    with zipfile.ZipFile(out, "w") as z:
        add(z, "[Content_Types].xml", CONTENT_TYPES.encode())
        add(z, "extension.vsixmanifest", MANIFEST.encode())
        for name in FILES:
            add(z, f"extension/{name}", (HERE / name).read_bytes())


if __name__ == "__main__":
    main(sys.argv[1])
