"""The Oracle's tokenizers: one per distinct set of tokenizer files, shared by every checkpoint that has it.

The checkpoints of one run carry identical tokenizer files, so they share one loaded tokenizer: files
are keyed by their content digest (re-read only when a file's size or mtime changed; a big
tokenizer.json is megabytes), and the last TOKENIZER_CACHE distinct ones are kept.

Must not: load models or decide what is loaded (tavern/oracle/manager.py does).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from arena.adapters import adapter_base, is_adapter_checkpoint
from arena.inference import ensure_pad

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
)
TOKENIZER_CACHE = 8  # distinct tokenizers kept; one training run has one


class Tokenizers:
    def __init__(self):
        self._tokenizers: OrderedDict[str, Any] = OrderedDict()  # content digest -> tokenizer
        self._keys: dict[str, tuple[tuple, str]] = {}  # folder -> (files' size/mtime, digest)
        self._lock = threading.Lock()

    def get(self, path: Path, base: Path | None = None):
        """The checkpoint's tokenizer, shared by every checkpoint whose tokenizer files are identical
        (`base`: an adapter's base folder, when the vault fetched it)."""
        from transformers import AutoTokenizer

        if not any((Path(path) / n).is_file() for n in TOKENIZER_FILES) and is_adapter_checkpoint(path):
            path = base or adapter_base(path)  # an adapter saved without a tokenizer speaks its base's
        files = [Path(path) / n for n in TOKENIZER_FILES if (Path(path) / n).is_file()]
        stamp = tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files)
        with self._lock:
            known = self._keys.get(str(path))
        if known is not None and known[0] == stamp:
            key = known[1]  # unchanged files: no need to read them again (a big tokenizer.json is MBs)
        else:
            h = hashlib.sha256()
            for f in files:
                h.update(f.name.encode() + b"\0" + f.read_bytes())
            key = h.hexdigest()
            with self._lock:
                self._keys[str(path)] = (stamp, key)
        with self._lock:
            tok = self._tokenizers.get(key)
            if tok is not None:
                self._tokenizers.move_to_end(key)
                return tok
        tok = ensure_pad(AutoTokenizer.from_pretrained(path))
        with self._lock:
            self._tokenizers[key] = tok
            while len(self._tokenizers) > TOKENIZER_CACHE:
                self._tokenizers.popitem(last=False)
        return tok
