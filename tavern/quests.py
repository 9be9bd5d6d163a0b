"""The upload path into the inbox (the board itself is the watchtower's read model).

Uploads go through the arena's intake (`Intake.accept_upload`): the same path as a file dropped
into `inbox/`, with its safe-name rule, size limit (tavern.max_upload_mb) and checks, so the page
gets the quest id, or the rejection reason, in the same response. The Tavern never moves queue files
itself: queue changes go through `arena.queue.QuestQueue`. The quest board and a quest's JSON are
read through `watchtower.board` (re-exported here for older imports).
"""

from __future__ import annotations

import logging
from typing import IO, TYPE_CHECKING, Any

from werkzeug.exceptions import RequestEntityTooLarge

from arena.queue import QueueError
from tavern.errors import ApiError
from watchtower.board import BOARD, board, quest_dict  # noqa: F401  (re-exported)

if TYPE_CHECKING:
    from sentinels.realm import Realm

log = logging.getLogger("realm.tavern.quests")

# Content-Types a raw (non-multipart) upload body may carry: it is taken as the file's bytes.
# curl --data-binary sends application/x-www-form-urlencoded unless told otherwise, so that type
# is a file too, never parsed as a form; "" is a body with no Content-Type at all.
RAW_TYPES = (
    "",
    "application/octet-stream",
    "application/x-www-form-urlencoded",
    "application/jsonl",
    "application/x-jsonlines",
    "application/x-ndjson",
    "application/json",
    "text/plain",
)


def check_raw_type(mimetype: str) -> None:
    """Refuse (415) a non-multipart body whose Content-Type says it is not a quest's bytes."""
    if mimetype not in RAW_TYPES:
        raise ApiError(
            415,
            f"Content-Type {mimetype!r} is not a quest: send the JSONL bytes as the raw body"
            f" ({', '.join(t for t in RAW_TYPES if t)} or none) with ?name=FILE.jsonl,"
            " or as the multipart field 'file'",
        )


def too_large(realm: Realm) -> ApiError:
    """The 413 for a body Werkzeug stopped at its ceiling, in intake's words (one message owner)."""
    from arena.intake.service import UploadTooLarge

    return ApiError(413, str(UploadTooLarge(realm.config.tavern.max_upload_mb << 20)))


def save_upload(
    realm: Realm, stream: IO[bytes], filename: str, priority: str | None = None
) -> dict[str, Any]:
    """Hand one upload to the arena's intake (safe name, size limit, checks); returns the quest."""
    from arena.intake.service import Intake, UploadError, UploadTooLarge

    try:
        quest = Intake.for_realm(realm).accept_upload(filename, stream, priority)
    except RequestEntityTooLarge as exc:
        # Werkzeug's own ceiling (MAX_CONTENT_LENGTH) hit mid-read: the same refusal, our words.
        raise too_large(realm) from exc
    except UploadTooLarge as exc:
        raise ApiError(413, str(exc)) from exc
    except UploadError as exc:
        raise ApiError(400, str(exc)) from exc
    except QueueError as exc:
        raise ApiError(409, str(exc)) from exc
    log.info("upload %s -> quest %s (%s)", filename, quest.id, quest.status)
    return {"name": quest.name, "quest": quest_dict(realm, quest)}
