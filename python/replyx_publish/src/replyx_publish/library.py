"""The replyx Redis function library: the very file the gateway ships, never a copy.

``gateway/src/broker/replyx.lua`` declares its name (``#!lua name=``) and version
(``local VERSION``); publishers FCALL ``replyx_publish`` and load the file (FUNCTION LOAD REPLACE)
only when Redis lacks it or holds an older version. Outside a checkout (an installed package),
point ``REPLYX_LUA_LIBRARY`` or ``library_path=`` at the file, or let a gateway load it (it does
at start-up).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

#: The function that stores and publishes one event.
PUBLISH_FUNCTION = "replyx_publish"
#: The function that answers the loaded library's version.
VERSION_FUNCTION = "replyx_version"
#: Environment variable naming the library file when the package is not run from a checkout.
LIBRARY_ENV = "REPLYX_LUA_LIBRARY"


def default_library_path() -> Path:
    """``$REPLYX_LUA_LIBRARY``, else the gateway's file in the checkout this package sits in."""
    env = os.environ.get(LIBRARY_ENV)
    if env:
        return Path(env)
    # python/replyx_publish/src/replyx_publish/library.py -> repository root
    return Path(__file__).resolve().parents[4] / "gateway" / "src" / "broker" / "replyx.lua"


@dataclass(frozen=True)
class Library:
    """The library's source text with the name and version it declares."""

    source: str
    name: str
    version: int
    path: Path


def read_library(path: Optional[Union[str, Path]] = None) -> Optional[Library]:
    """Reads the library file, or returns None when there is none (loading is then up to a gateway)."""
    where = Path(path) if path is not None else default_library_path()
    try:
        source = where.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    name = re.match(r"#!lua name=(\w+)", source)
    version = re.search(r"^local VERSION = '(\d+)'", source, re.M)
    if not name or not version:
        raise ValueError(f"{where}: not the replyx function library (no '#!lua name=' line or 'local VERSION')")
    return Library(source, name.group(1), int(version.group(1)), where)
