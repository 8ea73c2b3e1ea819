"""Reading and writing OpenAI chat-format JSONL: one ``{"messages": [...]}`` object per line.

Every error names the file and line, and is raised before any training starts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import DatasetError

ROLES = {"system", "user", "assistant"}


def validate_conversation(obj, where: str) -> dict:
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


def read_chat_jsonl(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such dataset file")
    conversations = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as error:
                raise DatasetError(f"{where}: not valid JSON ({error.msg} at column {error.colno})") from None
            conversations.append(validate_conversation(obj, where))
    if not conversations:
        raise DatasetError(f"{path}: the file holds no conversations")
    return conversations


def write_chat_jsonl(path: str | Path, conversations: Iterable[dict]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for conversation in conversations:
            handle.write(json.dumps({"messages": conversation["messages"]}, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path


def split_answer_letter(conversations: Sequence[dict]) -> list[str]:
    return [c["messages"][-1]["content"].strip() for c in conversations]
