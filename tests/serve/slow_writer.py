"""A writer that takes a few seconds, so a test can kill a worker *while* it holds a job (a real
LLM call takes seconds too; the fallback writer alone finishes in milliseconds)."""

from __future__ import annotations

import os
import time

from personarec.serve.writers import FallbackWriter


class SlowFallbackWriter(FallbackWriter):
    name = "slow-fallback"

    def write(self, history):
        time.sleep(float(os.environ.get("PERSONAREC_TEST_WRITER_DELAY", "3")))
        return super().write(history)
