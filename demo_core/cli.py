"""``python -m demo_core TASK``: JSON Lines in, exactly one JSON line out per line.

Outside evaluation relies on this contract: answers come in order, one per
input line (blank lines included), logs go to stderr, and a bad line gets
``{"error": "..."}`` without stopping the run.  The exit code is 0 unless
stdin itself cannot be read.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import TextIO

from .errors import InputError, ModelUnavailable
from .tasks import TASKS

log = logging.getLogger("demo_core.cli")


def serve(task: str, lines: TextIO, out: TextIO) -> int:
    loader = TASKS[task].load
    model, unavailable = None, None

    for line in lines:
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise InputError("Each line must be a JSON object.")
            if unavailable is None and model is None:
                try:
                    model = loader()
                except ModelUnavailable as exc:
                    unavailable = str(exc)
                except Exception as exc:  # a broken install must not look like a prediction
                    log.exception("loading the %s model failed", task)
                    unavailable = f"The {task} model could not be loaded ({type(exc).__name__})."
            if unavailable is not None:
                result = {"error": unavailable}
            else:
                result = model.predict_request(request).to_dict()
        except json.JSONDecodeError:
            result = {"error": "This line is not valid JSON."}
        except InputError as exc:
            result = {"error": str(exc)}
        except Exception as exc:  # never die on one line
            log.error("unexpected %s on a request", type(exc).__name__)
            result = {"error": f"Internal error ({type(exc).__name__}); the request was skipped."}
        out.write(json.dumps(result, ensure_ascii=False, allow_nan=False) + "\n")
        out.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if len(argv) != 1 or argv[0] not in TASKS:
        print(f"usage: python -m demo_core {{{','.join(TASKS)}}} < requests.jsonl > answers.jsonl", file=sys.stderr)
        return 2
    try:
        return serve(argv[0], sys.stdin, sys.stdout)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"cannot read stdin: {exc}", file=sys.stderr)
        return 1
