"""A Hugging Face checkpoint's ``tokenizer.json`` (the ``tokenizers`` library) behind the runtime's tokenizer
interface; the BOS token comes from the checkpoint's ``config.json``. The file is read through the input layer
(:mod:`speccascade.readers`) before the library parses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from speccascade.errors import InputError
from speccascade.readers import read_text

from .hf import CONFIG_FILE, TOKENIZER_FILE, read_config


@dataclass(frozen=True)
class HFTokenizer:
    """A ``tokenizer.json`` (the ``tokenizers`` library) with the interface the CLI uses: ``encode`` (no special
    tokens), ``decode``, ``prompt_ids`` (the BOS token of config.json, then the text) and ``vocab_size``."""

    tokenizer: Any
    bos_id: int | None
    path: Path

    @property
    def vocab_size(self) -> int:
        return int(self.tokenizer.get_vocab_size(with_added_tokens=True))

    @property
    def eot_id(self) -> int | None:
        return self.bos_id

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: Iterable[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def prompt_ids(self, text: str) -> list[int]:
        return ([self.bos_id] if self.bos_id is not None else []) + self.encode(text)


def load_tokenizer(directory: str | Path, vocab_size: int | None = None) -> HFTokenizer:
    """The checkpoint's ``tokenizer.json``; ``vocab_size`` (the model's) must hold every token id it makes."""
    directory = Path(directory).expanduser()
    path = directory / TOKENIZER_FILE
    if not path.is_file():
        raise InputError(f"{path}: file not found (the checkpoint's tokenizer)")
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise InputError("reading tokenizer.json needs the 'tokenizers' package (pip install "
                         "'speccascade[runtime]')") from None
    text = read_text(path, "json")  # the input layer: a regular file, the JSON size limit, UTF-8
    try:
        tokenizer = Tokenizer.from_str(text)
    except Exception as error:  # the Rust library raises its own exception type
        raise InputError(f"{path}: not a readable tokenizer.json: {str(error).splitlines()[0]}") from None
    config = read_config(directory) if (directory / CONFIG_FILE).is_file() else {}
    bos = config.get("bos_token_id")
    result = HFTokenizer(tokenizer, int(bos) if isinstance(bos, int) else None, path)
    if vocab_size is not None and result.vocab_size > vocab_size:
        raise InputError(f"{path}: the tokenizer has {result.vocab_size} tokens, more than the model's "
                         f"vocabulary of {vocab_size}")
    return result
