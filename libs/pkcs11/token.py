"""A PKCS#11 token connection that is thread-safe by construction.

Why one worker thread owns everything
-------------------------------------
Measured with python-pkcs11 0.10 and SoftHSM2 2.6:

* python-pkcs11 calls ``C_Initialize(NULL)``, i.e. without locking callbacks and without
  ``CKF_OS_LOCKING_OK``, so SoftHSM turns its own locking off; python-pkcs11 then releases the GIL
  around every ``C_*`` call. Using sessions from two or more threads segfaults or raises
  ``GeneralError``. So ALL token access in the process is funnelled through ONE dedicated worker
  thread (:class:`_Worker`, process-wide, shared by every :class:`Pkcs11Token` because the
  library is process-wide too). To scale, run more processes, not threads.
* Login state is per token and shared by all sessions of the process: a second
  ``open(user_pin=...)`` raises ``UserAlreadyLoggedIn`` and closing any logged-in session logs all
  of them out. So each :class:`Pkcs11Token` keeps ONE long-lived logged-in R/W session and hands it
  to every callback; nothing opens/closes sessions per request.
* ``pkcs11.lib(path)`` is effectively a per-process singleton (it is cached by path and
  ``C_Initialize`` runs once), and SoftHSM reads ``SOFTHSM2_CONF`` at initialisation: set it in
  ``os.environ`` before the first :meth:`Pkcs11Token.open`. Tokens created on disk after that are
  invisible until the library is re-initialised.

The library handle, the token and the session are only touched on the worker thread; callers
submit a callable (:meth:`Pkcs11Token.run` / :meth:`Pkcs11Token.run_sync`) that receives the session.
Each call is bounded by ``call_timeout_s`` (queueing included): on expiry the caller gets
:class:`~tsunagu.pkcs11.errors.TokenUnavailable` instead of hanging; a call still queued is dropped,
a call already running on the token is left to finish and the session is reopened afterwards.

Short calls on a module in this process's memory (``inline_calls``, for SoftHSM2): a call of a few
microseconds costs more in the hand-off than on the token — the worker, back from ``C_Sign``
without the GIL, waits for the busy event loop to give it up. :meth:`Pkcs11Token.run` with
``inline=True`` then runs the callable on the caller's thread when the worker is idle, under the
lock the worker holds around every call: access stays serialised, only the thread differs. It is
off by default: on a network HSM a call that hangs would hang the event loop, with no timeout.

Errors meaning the device/token/session is gone mark the session broken and raise
:class:`~tsunagu.pkcs11.errors.TokenUnavailable` (with ``Retry-After``); the next call reopens the
session transparently (re-initialising the library if the token cannot be found any more), so a
service survives an HSM restart without being restarted itself. :meth:`Pkcs11Token.reset` forces
the same reopen.

Fork safety: create (open) tokens in the process that uses them, i.e. after forking workers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import pkcs11
from pkcs11 import exceptions as p11e
from tsunagu.errors import DomainError
from tsunagu.pkcs11.errors import (
    KeyNotFound,
    PinIncorrect,
    Pkcs11ModuleNotFound,
    TokenNotFound,
    TokenUnavailable,
)
from tsunagu.pkcs11.settings import Pkcs11Settings

T = TypeVar("T")

logger = logging.getLogger(__name__)


def _exc_types(*names: str) -> tuple[type[BaseException], ...]:
    """The python-pkcs11 exception classes among ``names`` (some only exist in some versions)."""
    found = (getattr(p11e, name, None) for name in names)
    return tuple(cls for cls in found if isinstance(cls, type) and issubclass(cls, BaseException))


_GONE = _exc_types(
    "DeviceRemoved",
    "DeviceError",
    "DeviceMemory",
    "TokenNotPresent",
    "TokenNotRecognised",
    "SessionClosed",
    "SessionHandleInvalid",
    "SessionCount",
    "CryptokiNotInitialised",
    "CryptokiNotInitialized",
    "GeneralError",
    "FunctionFailed",
    "UserNotLoggedIn",
    "SlotIDInvalid",
)
"""Errors that mean the device, the token, the login or the session is gone: reopen next call."""

_NO_TOKEN: tuple[type[BaseException], ...] = (p11e.NoSuchToken, *_GONE)
"""The token cannot be found or reached."""

_BAD_PIN = _exc_types("PinIncorrect", "PinInvalid", "PinLenRange", "PinExpired", "PinLocked")
_NO_KEY = _exc_types("NoSuchKey", "ObjectHandleInvalid", "KeyHandleInvalid")


def _is_not_initialised(exc: BaseException) -> bool:
    """python-pkcs11 0.10 maps CKR_CRYPTOKI_NOT_INITIALIZED to a bare ``PKCS11Error``."""
    return type(exc) is p11e.PKCS11Error and "not initialized" in str(exc)


def _is_gone(exc: BaseException) -> bool:
    return isinstance(exc, _GONE) or _is_not_initialised(exc)


class _Worker:
    """The one thread of the process that talks to PKCS#11 (a daemon, so a hung call never blocks exit)."""

    def __init__(self) -> None:
        # Held around every call on the token, by the worker or by a caller running one inline.
        self.lock = threading.Lock()
        self._inline_thread: int | None = None  # the thread running a call inline, if one is
        self._queue: queue.SimpleQueue[tuple[Callable[[], Any], concurrent.futures.Future[Any]]] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._loop, name="tsunagu-pkcs11", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        """Queue ``fn``; the future is cancellable until the worker picks it up."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._queue.put((fn, future))
        return future

    def run_here(self, fn: Callable[[], T]) -> tuple[bool, T | None]:
        """Run ``fn`` on the calling thread if no call is on the token now: ``(True, result)``;
        ``(False, None)`` (nothing run) when the token is busy."""
        if not self.lock.acquire(blocking=False):
            return False, None
        self._inline_thread = threading.get_ident()
        try:
            return True, fn()
        finally:
            self._inline_thread = None
            self.lock.release()

    def is_current(self) -> bool:
        """True on the thread that holds the token now: the worker itself, or a caller running a
        call inline (a nested ``run_sync`` then runs inline instead of waiting for the lock)."""
        here = threading.get_ident()
        return here in (self._thread.ident, self._inline_thread)

    def _loop(self) -> None:
        while True:
            fn, future = self._queue.get()
            if not future.set_running_or_notify_cancel():
                continue  # the caller gave up (timeout/cancel) before we started: skip it
            try:
                with self.lock:
                    result = fn()
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)
            del fn, future


_worker_lock = threading.Lock()
_worker_instance: _Worker | None = None


def _worker() -> _Worker:
    global _worker_instance  # noqa: PLW0603 - one worker per process, by design
    with _worker_lock:
        if _worker_instance is None:
            _worker_instance = _Worker()
        return _worker_instance


def _forget_worker_after_fork() -> None:
    global _worker_instance  # noqa: PLW0603
    _worker_instance = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_worker_after_fork)


class Pkcs11Token:
    """One logged-in session on one token, used only from the process-wide PKCS#11 worker thread.

    Use one instance per token per process (a service usually has exactly one)::

        token = Pkcs11Token(settings)
        await token.open()
        signature = await token.run(lambda s: sign_ecdsa_p256_sha256(find_private_key(s, label="k"), data))
        await token.close()
    """

    def __init__(self, settings: Pkcs11Settings) -> None:
        self._settings = settings
        # Everything below is owned by the worker thread (only read/written there), except
        # ``_stale``, a flag the event loop may raise after a timeout (a plain bool store).
        self._lib: Any = None
        self._session: Any = None
        self._ever_opened = False
        self._closed = False
        self._stale = False

    def __repr__(self) -> str:
        return (
            f"Pkcs11Token(module_path={self._settings.module_path!r}, "
            f"token_label={self._settings.token_label!r})"
        )

    @property
    def settings(self) -> Pkcs11Settings:
        """The settings this token was created with (the PIN stays a ``SecretStr``)."""
        return self._settings

    # -- public API ------------------------------------------------------------------------------

    async def open(self) -> None:
        """Load the module, find the token and log in (idempotent).

        Raises :class:`Pkcs11ModuleNotFound`, :class:`TokenNotFound`, :class:`PinIncorrect` or
        :class:`TokenUnavailable`.
        """
        await self._submit(self._open_on_worker, None)

    def open_sync(self) -> None:
        """Blocking variant of :meth:`open` for synchronous callers."""
        self._submit_sync(self._open_on_worker, None)

    async def close(self) -> None:
        """Close the session (logging the token out). Later calls raise :class:`TokenUnavailable`."""
        await self._submit(self._close_on_worker, None)

    def close_sync(self) -> None:
        """Blocking variant of :meth:`close`."""
        self._submit_sync(self._close_on_worker, None)

    async def reset(self) -> None:
        """Drop the session; the next call reopens it (re-initialising the library if needed)."""
        await self._submit(self._drop_session, None)

    async def run(
        self, fn: Callable[[pkcs11.Session], T], *, timeout_s: float | None = None, inline: bool = False
    ) -> T:
        """Run ``fn(session)`` on the PKCS#11 worker thread and await its result.

        ``inline=True`` (for calls of microseconds: a few signatures) runs it on this thread
        instead when the settings allow it (``inline_calls``) and the token is idle; no timeout
        applies then.

        The event loop is never blocked. ``timeout_s`` (default ``call_timeout_s``) bounds queueing
        plus execution; on expiry :class:`TokenUnavailable` is raised. python-pkcs11 errors are
        mapped to :mod:`tsunagu.pkcs11.errors`; other exceptions from ``fn`` propagate unchanged.
        Do not keep key objects beyond the callback: they belong to the session, which may be
        replaced.
        """
        if inline and self._settings.inline_calls:
            ran, result = _worker().run_here(lambda: self._call_on_worker(fn))
            if ran:
                return result  # type: ignore[return-value]
        return await self._submit(lambda: self._call_on_worker(fn), timeout_s)

    def run_sync(self, fn: Callable[[pkcs11.Session], T], *, timeout_s: float | None = None) -> T:
        """Blocking variant of :meth:`run` for synchronous code (never call it on an event loop).

        Called from inside another callback (i.e. on the worker thread) it runs ``fn`` inline.
        """
        if _worker().is_current():
            return self._call_on_worker(fn)
        return self._submit_sync(lambda: self._call_on_worker(fn), timeout_s)

    async def __aenter__(self) -> Pkcs11Token:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- submission (any thread) -----------------------------------------------------------------

    def _timeout(self, timeout_s: float | None) -> float:
        return self._settings.call_timeout_s if timeout_s is None else timeout_s

    async def _submit(self, fn: Callable[[], T], timeout_s: float | None) -> T:
        worker = _worker()
        if worker.is_current():  # pragma: no cover - would deadlock; make the misuse loud
            raise RuntimeError("Pkcs11Token coroutines cannot be awaited from the PKCS#11 worker thread")
        future = worker.submit(fn)
        timeout = self._timeout(timeout_s)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        except TimeoutError:
            raise self._timed_out(future, timeout) from None

    def _submit_sync(self, fn: Callable[[], T], timeout_s: float | None) -> T:
        future = _worker().submit(fn)
        timeout = self._timeout(timeout_s)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            raise self._timed_out(future, timeout) from None

    def _timed_out(self, future: concurrent.futures.Future[Any], timeout: float) -> TokenUnavailable:
        label = self._settings.token_label
        if future.cancel():
            logger.warning("pkcs11 call on token %r not started within %.3gs (worker busy)", label, timeout)
            return TokenUnavailable(
                f"PKCS#11 token {label!r} is busy: call not started within {timeout:.3g}s"
            )
        # Running on the token right now (or finished a moment ago): it cannot be interrupted, so
        # the session is considered unhealthy and is reopened by the next call.
        self._stale = True
        logger.warning("pkcs11 call on token %r did not finish within %.3gs", label, timeout)
        return TokenUnavailable(f"PKCS#11 token {label!r} did not answer within {timeout:.3g}s")

    # -- worker thread (or a caller holding the worker's lock, see inline_calls) --------------------

    def _call_on_worker(self, fn: Callable[[Any], T]) -> T:
        session = self._ensure_session()
        try:
            return fn(session)
        except DomainError:
            raise
        except _NO_KEY as exc:
            raise KeyNotFound(f"key not found on PKCS#11 token {self._settings.token_label!r}") from exc
        except _BAD_PIN:
            raise self._pin_error() from None
        except p11e.PKCS11Error as exc:
            if _is_gone(exc):
                raise self._mark_gone(exc) from exc
            raise

    def _open_on_worker(self) -> None:
        self._closed = False
        self._ensure_session()

    def _close_on_worker(self) -> None:
        self._closed = True
        self._drop_session()

    def _mark_gone(self, exc: BaseException) -> TokenUnavailable:
        label = self._settings.token_label
        logger.warning(
            "pkcs11 token %r unavailable (%s); the session will be reopened", label, type(exc).__name__
        )
        self._drop_session()
        return TokenUnavailable(f"PKCS#11 token {label!r} is unavailable ({type(exc).__name__})")

    def _pin_error(self) -> PinIncorrect:
        # Deliberately built from the label only: neither the PIN nor the library's exception text.
        label = self._settings.token_label
        logger.error("pkcs11 token %r rejected the configured user PIN", label)
        return PinIncorrect(f"PKCS#11 token {label!r} rejected the configured user PIN")

    def _drop_session(self) -> None:
        session, self._session = self._session, None
        self._stale = False
        if session is None:
            return
        try:
            session.close()
        except p11e.PKCS11Error as exc:  # already gone: nothing to release
            logger.debug(
                "pkcs11 closing a dead session on %r: %s", self._settings.token_label, type(exc).__name__
            )

    def _ensure_session(self) -> Any:
        if self._closed:
            raise TokenUnavailable(f"PKCS#11 token {self._settings.token_label!r} has been closed")
        if self._stale:
            self._drop_session()
        if self._session is None:
            self._session = self._open_session()
        return self._session

    def _load_lib(self) -> Any:
        path = self._settings.module_path
        if not os.path.isfile(path):
            raise Pkcs11ModuleNotFound(f"PKCS#11 module {path!r} does not exist")
        try:
            return pkcs11.lib(path)  # cached per path by python-pkcs11; re-initialises if finalised
        except p11e.PKCS11Error as exc:
            raise Pkcs11ModuleNotFound(f"cannot load PKCS#11 module {path!r}: {exc}") from exc

    def _open_session(self) -> Any:
        reopening = self._ever_opened
        if self._lib is None:
            self._lib = self._load_lib()
        try:
            session = self._login()
        except _NO_TOKEN as exc:
            if not reopening and isinstance(exc, p11e.NoSuchToken):
                raise TokenNotFound(
                    f"no PKCS#11 token labelled {self._settings.token_label!r} "
                    f"in module {self._settings.module_path!r}"
                ) from exc
            # The token may have come back under a new slot (HSM restart, re-plugged device):
            # re-initialise the library once. Other sessions in the process get reopened lazily.
            logger.info(
                "pkcs11 re-initialising %r to find token %r",
                self._settings.module_path,
                self._settings.token_label,
            )
            try:
                self._lib.reinitialize()
                session = self._login()
            except _NO_TOKEN as exc2:
                raise TokenUnavailable(
                    f"PKCS#11 token {self._settings.token_label!r} is unavailable ({type(exc2).__name__})"
                ) from exc2
            except p11e.PKCS11Error as exc2:
                if _is_not_initialised(exc2):
                    self._lib = None
                    raise TokenUnavailable(
                        f"PKCS#11 module {self._settings.module_path!r} is not initialised"
                    ) from exc2
                raise
        except p11e.PKCS11Error as exc:
            if _is_not_initialised(exc):  # someone finalised the library: load it again next time
                self._lib = None
                raise TokenUnavailable(
                    f"PKCS#11 module {self._settings.module_path!r} is not initialised"
                ) from exc
            raise
        self._ever_opened = True
        logger.info(
            "pkcs11 session opened on token %r (%s)", self._settings.token_label, self._settings.module_path
        )
        return session

    def _login(self) -> Any:
        label = self._settings.token_label
        try:
            token = self._lib.get_token(token_label=label)
        except p11e.MultipleTokensReturned as exc:
            raise TokenNotFound(f"several PKCS#11 tokens are labelled {label!r}") from exc
        try:
            return token.open(rw=True, user_pin=self._settings.user_pin.get_secret_value())
        except _BAD_PIN:
            raise self._pin_error() from None
        except p11e.UserAlreadyLoggedIn:
            # Login is per token and process: another session of this process is logged in, and
            # a new session shares that login. (Closing either logs both out; the other side then
            # sees UserNotLoggedIn and reopens.)
            logger.warning("pkcs11 token %r already logged in by this process; sharing the login", label)
            return token.open(rw=True)


__all__ = ["Pkcs11Token"]
