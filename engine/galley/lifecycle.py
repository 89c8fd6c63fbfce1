"""Process lifetime helpers shared by the engine and the recipe runner (no torch)."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def exit_with_parent() -> None:
    """Have Linux send this process SIGTERM when its parent dies.

    The control plane starts the engine and every recipe runner. A control plane killed with
    SIGKILL cannot stop them, so they would keep their spawns and GPU memory. With this they
    shut down as on a normal SIGTERM. On other platforms this does nothing.
    """
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
            return
    except (OSError, AttributeError) as error:
        log.warning("cannot ask to exit with the parent process: %s", error)
        return
    # The parent may have died before prctl ran, and then no signal would come.
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)
