"""Reading and writing OpenAI chat-format JSONL: one ``{"messages": [...]}`` object per line.

Reading checks every line before returning anything: all malformed lines are reported together, each as
``file:line: reason`` (the first ``MAX_REPORTED``, then how many more), in one ``DatasetError`` raised
before any training starts, so one pass over the error fixes the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterable, Mapping

from ..errors import DatasetError

ROLES = {"system", "user", "assistant"}
MAX_REPORTED = 20  # faults listed in one error; beyond this the message only counts them


def validate_conversation(obj, where: str) -> dict:
    """The conversation with only the fields we train on; a DatasetError naming ``where`` if malformed."""
    if not isinstance(obj, dict) or "messages" not in obj:
        raise DatasetError(f"{where}: expected an object with a 'messages' list")
    messages = obj["messages"]
    if not isinstance(messages, list) or not messages:
        raise DatasetError(f"{where}: 'messages' must be a non-empty list")
    for k, message in enumerate(messages):
        if not isinstance(message, dict):
            raise DatasetError(f"{where}: message {k} is not an object")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise DatasetError(f"{where}: message {k} has role {role!r}; expected one of {sorted(ROLES)}")
        if not isinstance(content, str):
            raise DatasetError(f"{where}: message {k} ({role}) has no text 'content'")
    if messages[-1]["role"] != "assistant":
        raise DatasetError(f"{where}: the last message must be the assistant's answer to train on")
    return {"messages": [{"role": m["role"], "content": m["content"]} for m in messages]}


def _parse_line(raw: bytes, where: str) -> dict:
    try:
        # -sig: a byte-order mark some editors put before the first line; the line ending goes, or JSON cut short
        # would be reported at column 1 of a line after it
        line = raw.decode("utf-8-sig").rstrip("\r\n")
    except UnicodeDecodeError as error:
        raise DatasetError(f"{where}: not UTF-8 text (byte {error.start + 1})") from None
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as error:
        raise DatasetError(f"{where}: not valid JSON ({error.msg} at column {error.colno})") from None
    return validate_conversation(obj, where)


def _read(path: Path, check: Callable[[dict, str], None] | None = None) -> tuple[list[dict], list[str]]:
    """(conversations, faults) of one file; a fault is one ``file:line: reason`` string. ``check``
    (conversation, where) raises a DatasetError for a line a caller's own rules reject."""
    if not path.exists():
        return [], [f"{path}: no such dataset file"]
    conversations, faults = [], []
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                conversation = _parse_line(raw, f"{path}:{number}")
                if check is not None:
                    check(conversation, f"{path}:{number}")
                conversations.append(conversation)
            except DatasetError as error:
                faults.append(str(error))
    if not conversations and not faults:
        faults.append(f"{path}: the file holds no conversations")
    return conversations, faults


def fault_report(faults: list[str]) -> str:
    """Faults as one error text: a single fault as it is; several under a header that counts them all,
    the first ``MAX_REPORTED`` listed, then how many more."""
    if len(faults) == 1:
        return faults[0]
    shown = faults[:MAX_REPORTED]
    more = [f"... and {len(faults) - len(shown)} more"] if len(faults) > len(shown) else []
    return "\n".join([f"{len(faults)} faults in the chat data:"] + shown + more)


def raise_if_any(faults: list[str]) -> None:
    if faults:
        raise DatasetError(fault_report(faults))


def read_chat_jsonl(path: str | Path) -> list[dict]:
    """Every conversation of one file, or one DatasetError listing every malformed line."""
    conversations, faults = _read(Path(path))
    raise_if_any(faults)
    return conversations


def read_checked_chat_jsonl(path: str | Path, check: Callable[[dict, str], None]) -> tuple[list[dict], list[str]]:
    """The conversations of one file that pass the format and ``check``, and one ``file:line: reason`` per
    line that does not: for a caller that chooses to drop bad lines (and count them) rather than stop."""
    return _read(Path(path), check)


def read_chat_jsonl_files(paths: Mapping[str, str | Path]) -> dict[str, list[dict]]:
    """``read_chat_jsonl`` for several files (name -> path): the faults of all of them in one error."""
    results = {name: _read(Path(path)) for name, path in paths.items()}
    raise_if_any([fault for _, faults in results.values() for fault in faults])
    return {name: conversations for name, (conversations, _) in results.items()}


def write_chat_jsonl(path: str | Path, conversations: Iterable[dict]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for conversation in conversations:
            handle.write(json.dumps({"messages": conversation["messages"]}, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path

