"""The `opendata` source: real CMS simulation (NanoAOD) from the CERN Open Data portal.

What it does, step by step:

1. **List** the ROOT files of each record of the dataset (``spec.opendata_records``) through
   the portal's API, ``{server}/api/records/{recid}``. The server is
   ``$MLHEP_OPENDATA_SERVER`` or ``https://opendata.cern.ch``. Records list their files as
   ``root://eospublic.cern.ch//eos/opendata/...`` (XRootD) with a size and an adler32
   checksum; large records group them in file indices. The portal serves the same files over
   HTTPS as ``{server}/eos/opendata/...``, which is what we read (no XRootD needed).
2. **Read** only what is needed: by default the files stay on the portal and uproot reads, over
   HTTP(S) byte ranges (``uproot.source.http.HTTPSource``, standard library only), the branches
   below for the events needed, a few percent of each file's bytes. Only the resulting arrays are
   cached. With ``$MLHEP_OPENDATA_READ=download`` (or ``produce(..., read="download")``) whole files are
   downloaded into ``<cache>/opendata/<recid>/<file name>`` first: through ``<name>.partial``,
   renamed only once size and adler32 checksum match the listing, resumed with an HTTP Range
   request after an interruption.
   Transient errors (HTTP 5xx, reset connections) are tried again with growing pauses. A file that
   is not ``online``, answers 404, or fails its checksum twice is skipped with one line, and the
   next file of the record takes its place; the load fails only when the record cannot supply the
   events. On a Dask client (:mod:`data_fetch.cluster`) the reading runs as one task per file piece,
   as with ``uproot.dask``; the arrays are the same.
3. **Convert** the NanoAOD branches of tree ``Events``: apply the CMS object identification
   below, and build the object table with :func:`data_fetch.cms_ad.build_objects` (which applies
   the kinematic selection shared with the offline source).

Object identification (standard NanoAOD flags):

* electrons: ``Electron_cutBased >= 2`` (cut-based ID, "loose" working point or tighter);
* muons: ``Muon_looseId`` and ``Muon_pfRelIso04_all < 0.25`` (loose ID, loose PF isolation);
* jets: ``Jet_jetId >= 2`` (tight jet ID bit set).

Events: ``round(fraction * n_events)`` from each record (rounding leftovers to the first). The seed
selects the events, not only their order: each record is cut into windows of
``fraction * EVENTS_PER_WINDOW`` consecutive events, seed ``s`` reads window ``s mod W`` (W: the whole
windows every record holds) and shuffles with ``np.random.default_rng(s)``. Two seeds that differ
modulo W never share an event, so a held-out sample made with one is no part of a training sample made
with the other (``python -m data_fetch check-portal`` checks the course's own seeds).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import awkward as ak
import numpy as np
import requests
import uproot
from cernopendata_client import searcher
from tqdm.auto import tqdm

from . import cache, cms_ad
from .errors import ChecksumMismatchError, DataFetchError, SourceUnavailableError
from .registry import CMS_AD, DatasetSpec, OpenDataRecord

DEFAULT_SERVER = "https://opendata.cern.ch"
SERVER_VARIABLE = "MLHEP_OPENDATA_SERVER"

TREE = "Events"
BRANCHES = (
    "MET_pt",
    "MET_phi",
    "genWeight",
    "Electron_pt",
    "Electron_eta",
    "Electron_phi",
    "Electron_cutBased",
    "Muon_pt",
    "Muon_eta",
    "Muon_phi",
    "Muon_looseId",
    "Muon_pfRelIso04_all",
    "Jet_pt",
    "Jet_eta",
    "Jet_phi",
    "Jet_jetId",
)
ELECTRON_MIN_CUT_BASED = 2  # NanoAOD cutBased: 0 fail, 1 veto, 2 loose, 3 medium, 4 tight
MUON_MAX_REL_ISO = 0.25  # loose particle-flow isolation (cone 0.4, delta-beta corrected)
JET_MIN_JET_ID = 2  # jetId is a bit mask: bit 1 (value 2) = tight, bit 2 (value 4) = tight lepton veto
IDENTIFICATION = {
    "electron": f"Electron_cutBased >= {ELECTRON_MIN_CUT_BASED}",
    "muon": f"Muon_looseId & (Muon_pfRelIso04_all < {MUON_MAX_REL_ISO})",
    "jet": f"Jet_jetId >= {JET_MIN_JET_ID}",
}

#: Seconds to wait for a connection / for the next bytes of an answer. Without a timeout a
#: dead network would freeze a notebook cell forever.
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0
#: Bytes per read. When a connection dies, the chunk being read is lost (requests/urllib3
#: discard it), so a resumed download starts again at a multiple of this.
CHUNK_BYTES = 1 << 20
#: How many times one download may be interrupted (and resumed) before we give up.
MAX_INTERRUPTIONS = 5
RETRY_PAUSE_SECONDS = 2.0
HEADERS = {"User-Agent": "mlhep-course data_fetch (requests)"}
#: Tries of one listing, opening or read before the source counts as unavailable, and the first pause
#: between them (doubled each time: 2, 4, 8 s).
ATTEMPTS = 4
BACKOFF_SECONDS = 2.0
#: How files are read: byte ranges of the needed branches over HTTP, or whole files downloaded first.
READ_MODES = ("remote", "download")
READ_VARIABLE = "MLHEP_OPENDATA_READ"
#: Events of one seed's window (the course's largest sample, lecture scale): see :func:`produce`.
EVENTS_PER_WINDOW = 100_000

T = TypeVar("T")


@dataclass(frozen=True)
class RemoteFile:
    """One file of a record, as the portal lists it."""

    url: str  # HTTP(S) address to read it from
    size: int  # bytes
    checksum: str  # as listed, e.g. "adler32:0a1b2c3d", or a bare 8-hex adler32
    availability: str = "online"  # the portal marks files kept on tape "on demand"

    @property
    def name(self) -> str:
        return self.url.rsplit("/", 1)[-1]


# ------------------------------------------------------------------ portal access
def server_url() -> str:
    """The portal's base URL: ``$MLHEP_OPENDATA_SERVER`` or ``https://opendata.cern.ch``."""
    return (os.environ.get(SERVER_VARIABLE) or DEFAULT_SERVER).rstrip("/")


def _short_reason(exc: Exception) -> str:
    """A few words for a network error (requests' own messages run over several lines)."""
    text = str(exc)
    for known in (
        "Connection refused",
        "Name or service not known",
        "Temporary failure in name resolution",
        "Network is unreachable",
        "No route to host",
        "certificate verify failed",
        "Connection reset by peer",
        "Read timed out",
        "timed out",
    ):
        if known in text:
            return known.lower()
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "connection broken during the transfer"
    return type(exc).__name__


def _origin(url: str) -> str:
    """``scheme://host:port`` of a URL, to name the server in messages."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _unreachable(server: str, reason: str) -> SourceUnavailableError:
    return SourceUnavailableError(
        f"The CERN Open Data portal could not be reached at {server} ({reason}). Check the network "
        f"connection (and ${SERVER_VARIABLE} if you set it), or make the events offline with "
        'source="pythia" (the offline default, which source="auto" picks when the portal is '
        "unreachable).",
        reason,
    )


def _check_status(response: requests.Response, server: str, what: str) -> None:
    """Turn an HTTP error answer into an error that says what to do."""
    if response.status_code < 400:
        return
    if response.status_code >= 500:  # the portal is up but not well: try later or go offline
        raise _unreachable(server, f"HTTP {response.status_code} for {what}")
    raise DataFetchError(
        f"the portal {server} answered HTTP {response.status_code} for {what} ({response.url}); "
        f'check the record number and ${SERVER_VARIABLE}, or use source="pythia"'
    )


def portal_reachable(timeout: float = 3.0) -> tuple[bool, str]:
    """Does the CERN Open Data portal answer?

    Asks for the API page of the dataset's first record; only the status line and headers are
    read (``stream=True``), so it costs one short round trip.

    Args:
        timeout: seconds to wait for the connection and for the answer.

    Returns:
        (ok, reason): ``ok`` is True if the portal answered without an HTTP error;
        ``reason`` says in a few words what happened.
    """
    server = server_url()
    url = f"{server}/api/records/{CMS_AD.opendata_records[0].recid}"
    start = time.perf_counter()
    try:
        with requests.get(url, timeout=timeout, stream=True, headers=HEADERS) as response:
            status = response.status_code
    except requests.RequestException as exc:
        return False, f"{server}: {_short_reason(exc)}"
    if status >= 400:
        return False, f"{server}: HTTP {status}"
    return True, f"{server}, HTTP {status} in {time.perf_counter() - start:.1f} s"


def fetch_record_json(recid: int, server: str | None = None) -> dict:
    """The portal's JSON description of record ``recid`` (``{server}/api/records/{recid}``).

    We ask with ``requests`` rather than ``cernopendata_client.searcher.get_record_as_json``:
    that function sets no timeout (a dead network hangs the notebook), first loads the
    record's HTML page (a second request), and calls ``sys.exit`` on an HTTP error, which
    would end a student's script instead of raising an error it can catch.

    Args:
        recid: record number on the portal.
        server: base URL; ``server_url()`` if None.

    Returns:
        The decoded JSON (a dict with a ``metadata`` key).
    """
    server = server or server_url()
    url = f"{server}/api/records/{recid}"
    try:
        response = requests.get(url, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT), headers=HEADERS)
    except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
        raise _unreachable(server, _short_reason(exc)) from None
    except requests.RequestException as exc:  # e.g. a server URL without http(s)://
        raise DataFetchError(f"cannot ask {url}: {exc}; check ${SERVER_VARIABLE}") from None
    _check_status(response, server, f"record {recid}")
    try:
        record = response.json()
    except ValueError:
        record = None
    if not isinstance(record, dict) or "metadata" not in record:
        raise DataFetchError(
            f"{url} did not answer with a record's JSON description; is {server} the CERN Open Data portal?"
        )
    return record


def list_record_files(recid: int, server: str | None = None) -> list[RemoteFile]:
    """The ROOT files of record ``recid``, with their HTTP(S) address, size and checksum.

    The expansion of file indices and the rewriting of ``root://eospublic.cern.ch//eos/...``
    into ``{server}/eos/...`` are done by the portal's own client
    (``cernopendata_client.searcher.get_files_list`` with ``protocol="https"``, as
    ``cernopendata-client get-file-locations --protocol https`` does). Addresses that are
    already http(s) are kept as they are.

    Args:
        recid: record number on the portal.
        server: base URL; ``server_url()`` if None.

    Returns:
        The record's ROOT files in the order the portal lists them.
    """
    server = server or server_url()
    return files_of_record(fetch_record_json(recid, server), server)


def files_of_record(record: dict, server: str) -> list[RemoteFile]:
    """The ROOT files listed in a record's JSON (see :func:`list_record_files`)."""
    # cernopendata-client 1.0 returns (address, size, checksum) tuples; the availability of each file
    # ("online", or "on demand" for files on tape) is read from the JSON by file name.
    listing = searcher.get_files_list(server=server, record_json=record, protocol="https", expand=True)
    availability = {
        str(entry.get("uri", "")).rsplit("/", 1)[-1]: str(entry.get("availability", "online"))
        for entry in _listed_files(record.get("metadata", {}))
    }
    files = [
        RemoteFile(url, int(size), checksum, availability.get(url.rsplit("/", 1)[-1], "online"))
        for url, size, checksum in listing
        if url.startswith(("http://", "https://")) and url.endswith(".root")
    ]
    if not files:
        raise DataFetchError(
            f"record {record['metadata'].get('recid')} on {server} lists no ROOT file "
            'that can be read over HTTP(S); use source="pythia"'
        )
    return files


def _listed_files(metadata: dict) -> list[dict]:
    """Every file entry of a record's metadata: its own files and those inside its file indices."""
    entries = [entry for entry in metadata.get("files", []) if isinstance(entry, dict)]
    for index in metadata.get("_file_indices", []):
        if isinstance(index, dict):
            entries += [entry for entry in index.get("files", []) if isinstance(entry, dict)]
    return entries


# ------------------------------------------------------------------ downloads
def adler32_of(path: Path) -> int:
    """adler32 checksum of a file (what the portal lists), read in chunks to spare memory."""
    value = 1  # adler32's starting value
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            value = zlib.adler32(chunk, value)
    return value & 0xFFFFFFFF


def _mismatch(path: Path, remote: RemoteFile) -> str | None:
    """None if ``path`` has the listed size and checksum, else what differs."""
    size = path.stat().st_size
    if size != remote.size:
        return f"expected {remote.size} bytes, got {size}"
    algorithm, _, expected = remote.checksum.rpartition(":")
    algorithm = algorithm or "adler32"  # a bare 8-hex checksum is adler32 (as the portal's client reads it)
    if algorithm != "adler32":  # the portal lists adler32; anything else we can only size-check
        return None
    got = adler32_of(path)
    if got != int(expected, 16):
        return f"expected checksum adler32:{int(expected, 16):08x}, got adler32:{got:08x}"
    return None


def _stream_into(remote: RemoteFile, partial: Path, progress: bool) -> None:
    """One HTTP GET of ``remote`` into ``partial``, continuing it if it already has bytes."""
    have = partial.stat().st_size if partial.exists() else 0
    # "identity": the exact bytes of the file (no compression), so that sizes, checksums and
    # byte ranges refer to the file itself.
    headers = {**HEADERS, "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    with requests.get(
        remote.url, headers=headers, stream=True, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT)
    ) as response:
        if have and response.status_code == 206:
            # The server sends only the missing part: append it.
            if not response.headers.get("Content-Range", "").startswith(f"bytes {have}-"):
                raise DataFetchError(
                    f"{remote.url} answered with another byte range than asked; delete {partial} and try again"
                )
            mode = "ab"
        elif response.status_code == 416:
            # "Range not satisfiable": the partial file is no beginning of this file. Start over.
            response.close()
            partial.unlink()
            _stream_into(remote, partial, progress)
            return
        else:
            if response.status_code == 404:  # the caller skips a missing file for the next one
                raise FileNotFoundError(f"{remote.url}: HTTP 404")
            _check_status(response, _origin(remote.url), f"file {remote.name}")
            mode, have = "wb", 0  # no partial file, or a server without Range support: from scratch
        with (
            open(partial, mode) as out,
            tqdm(
                total=remote.size,
                initial=have,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=remote.name,
                disable=not progress,
            ) as bar,
        ):
            for chunk in response.iter_content(CHUNK_BYTES):
                out.write(chunk)
                bar.update(len(chunk))


def _transfer(remote: RemoteFile, partial: Path, progress: bool) -> None:
    """Bring ``partial`` up to the listed size, resuming after interruptions."""
    interruptions = 0
    while True:
        have = partial.stat().st_size if partial.exists() else 0
        if have > remote.size:  # cannot be a beginning of the file we want
            partial.unlink()
        elif have == remote.size:
            return
        try:
            _stream_into(remote, partial, progress)
            return  # the server sent all it meant to send; the caller checks size and checksum
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            interruptions += 1
            have = partial.stat().st_size if partial.exists() else 0
            if interruptions > MAX_INTERRUPTIONS:
                reason = f"{_short_reason(exc)}, {interruptions} times while downloading {remote.name}"
                unreachable = _unreachable(_origin(remote.url), reason)
                message = str(unreachable)
                if have:  # keep what arrived: the next call continues from there
                    message += (
                        f" The {have} bytes received so far are kept in {partial}; the next "
                        "attempt resumes from there."
                    )
                else:
                    partial.unlink(missing_ok=True)
                raise SourceUnavailableError(message, unreachable.reason) from None
            print(
                f"data_fetch: download of {remote.name} interrupted at {have} of {remote.size} bytes "
                f"({_short_reason(exc)}); resuming"
            )
            time.sleep(RETRY_PAUSE_SECONDS)


def download_file(remote: RemoteFile, folder: Path, progress: bool = True) -> Path:
    """Download ``remote`` into ``folder`` (once), checked against the listed size and checksum.

    A complete file from an earlier call is reused (its size is checked). The bytes go to
    ``<name>.partial`` first and are renamed to ``<name>`` only when they match the listing.
    On a mismatch the partial file is deleted and the file downloaded once more from scratch.

    Args:
        remote: the file, as :func:`list_record_files` returns it.
        folder: where to put it (created if needed).
        progress: show a tqdm progress bar.

    Returns:
        The path of the complete, checked file.

    Raises:
        ChecksumMismatchError: the file still does not match after a second download.
        SourceUnavailableError: the connection failed too often.
    """
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / remote.name
    if target.exists():
        if target.stat().st_size == remote.size:
            return target  # checked when it was downloaded
        target.unlink()  # not the file the record lists (any more): fetch it again
    partial = folder / f"{remote.name}.partial"
    problem = None
    for attempt in (1, 2):
        _transfer(remote, partial, progress)
        problem = _mismatch(partial, remote)
        if problem is None:
            os.replace(partial, target)  # atomic: the final name appears only for a checked file
            return target
        partial.unlink()
        if attempt == 1:
            print(
                f"data_fetch: {remote.name} does not match the record ({problem}); downloading it "
                "again from scratch"
            )
    raise ChecksumMismatchError(
        f"{remote.name} downloaded from {remote.url} does not match the record's listing twice in a "
        f"row: {problem}. The damaged download was deleted. Try again later; if it persists, the "
        'portal\'s copy may be broken (tell opendata-support@cern.ch), and source="pythia" works '
        "offline meanwhile."
    )


# ------------------------------------------------------------------ reading files, remote or on disk
def read_mode(mode: str | None = None) -> str:
    """How files are read: ``mode``, else ``$MLHEP_OPENDATA_READ``, else ``"remote"``."""
    chosen = mode or os.environ.get(READ_VARIABLE) or "remote"
    if chosen not in READ_MODES:
        raise DataFetchError(
            f"unknown open-data read mode {chosen!r} (from {'the argument' if mode else '$' + READ_VARIABLE}); "
            f"choose one of {', '.join(READ_MODES)}"
        )
    return chosen


#: Failures worth another try: the server answered badly (HTTP 5xx) or the connection broke on the way or
#: timed out. A refused connection or an unknown host means no network (or a wrong address), and a 404 a
#: missing file: no use waiting for those.
TRANSIENT = ("HTTP 5", "connection reset by peer", "timed out", "connection broken")
_STATUS = re.compile(r"(?:status|response was|HTTP) (\d{3})")


def _transient_reason(exc: BaseException) -> str | None:
    """A few words if ``exc`` is worth another try (a server or network hiccup), else None."""
    if isinstance(exc, FileNotFoundError):  # HTTP 404: the file is not there
        return None
    if isinstance(exc, (TimeoutError, requests.Timeout)):
        return "timed out"
    if isinstance(
        exc,
        (
            ConnectionResetError,  # includes http.client.RemoteDisconnected
            ConnectionAbortedError,
            BrokenPipeError,
            http.client.IncompleteRead,
            requests.exceptions.ChunkedEncodingError,
        ),
    ):
        return "connection broken during the transfer"
    if isinstance(exc, SourceUnavailableError):  # ours, with the reason it was raised for
        reason = exc.reason
    elif isinstance(exc, http.client.HTTPException):  # uproot: "responded with status 502, rather than 206"
        status = _STATUS.search(str(exc))
        reason = f"HTTP {status.group(1)}" if status else type(exc).__name__
    elif isinstance(exc, (OSError, requests.RequestException)):
        reason = _short_reason(exc)
    else:
        return None
    return reason if any(word in reason for word in TRANSIENT) else None


def with_retries(what: str, action: Callable[[], T]) -> T:
    """``action()``, tried again after transient errors with growing pauses (2, 4, 8 s).

    The portal's maintainers report intermittent HTTP 502 answers from its file servers and advise
    trying again. A missing file (404) or an unreachable server is not retried. After ``ATTEMPTS``
    failed tries the error says the source is unavailable.
    """
    pause = BACKOFF_SECONDS
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return action()
        except Exception as exc:
            reason = _transient_reason(exc)
            if reason is None:
                raise
            if attempt == ATTEMPTS:
                raise SourceUnavailableError(
                    f"{what} failed {ATTEMPTS} times ({reason}); the CERN Open Data portal may be having "
                    'trouble: try again later, or use source="pythia" (offline) meanwhile'
                ) from None
            print(f"data_fetch: {what}: {reason}; trying again in {pause:g} s")
            time.sleep(pause)
            pause *= 2
    raise AssertionError("unreachable")


def open_remote(url: str):
    """``uproot.open`` over HTTP(S) with the standard library (no fsspec/aiohttp), reading only what is asked."""
    return uproot.open(url, handler=uproot.source.http.HTTPSource, timeout=READ_TIMEOUT)


@dataclass
class FileReader:
    """Opens the files of one record, remotely (byte ranges) or after downloading them whole.

    In this process a remote file stays open between counting its events and reading them, so that
    its tree's description (the metadata of every branch, a few MB for a full NanoAOD file) is read
    once; a Dask task (:func:`read_piece`) opens its file again, so on Dask it is read twice.
    """

    mode: str
    folder: Path
    progress: bool
    opened: dict = field(default_factory=dict)  # url -> open remote file

    def local_path(self, remote: RemoteFile) -> Path:
        return with_retries(
            f"downloading {remote.name}", lambda: download_file(remote, self.folder, self.progress)
        )

    def _tree(self, remote: RemoteFile):
        if remote.url not in self.opened:
            self.opened[remote.url] = open_remote(remote.url)
        return _events_tree(self.opened[remote.url], remote.url)

    def _forget(self, remote: RemoteFile) -> None:
        """Close a remote file after an error, so that a retry opens it afresh."""
        file = self.opened.pop(remote.url, None)
        if file is not None:
            file.close()

    def _remotely(self, what: str, remote: RemoteFile, action: Callable[[], T]) -> T:
        def attempt() -> T:
            try:
                return action()
            except Exception:
                self._forget(remote)
                raise

        return with_retries(what, attempt)

    def num_entries(self, remote: RemoteFile) -> int:
        """Events of a file: from its copy on disk if there is one, else from its header, read remotely
        (a file is downloaded only if events are read from it)."""
        local = self.folder / remote.name
        if self.mode == "download" and local.exists() and local.stat().st_size == remote.size:
            return count_events(local)
        return self._remotely(f"opening {remote.name}", remote, lambda: int(self._tree(remote).num_entries))

    def read(self, remote: RemoteFile, start: int, stop: int) -> ak.Array:
        if self.mode == "download":
            return read_nanoaod(self.local_path(remote), start, stop)
        return self._remotely(
            f"reading events {start}-{stop} of {remote.name}",
            remote,
            lambda: _read_branches(self._tree(remote), start, stop),
        )

    def close(self) -> None:
        for file in self.opened.values():
            file.close()
        self.opened.clear()


# ------------------------------------------------------------------ NanoAOD -> object table
def count_events(path: Path) -> int:
    """Number of events (entries of tree ``Events``) in a NanoAOD file."""
    with uproot.open(path) as file:
        return int(_events_tree(file, path).num_entries)


def _events_tree(file, where):
    if TREE not in file:
        raise DataFetchError(f"{where} has no tree {TREE!r}: is it a CMS NanoAOD file?")
    return file[TREE]


def _read_branches(tree, start: int | None, stop: int | None) -> ak.Array:
    missing = [branch for branch in BRANCHES if branch not in tree]
    if missing:
        raise DataFetchError(
            f"{tree.file.file_path} has no branch {', '.join(missing)}: is it a CMS NanoAOD file?"
        )
    return tree.arrays(list(BRANCHES), entry_start=start, entry_stop=stop, library="ak")


def read_nanoaod(path: Path, start: int | None = None, stop: int | None = None) -> ak.Array:
    """Read the branches this source needs (``BRANCHES``) for events ``start`` to ``stop``.

    Args:
        path: a NanoAOD ROOT file on disk (remote files go through :class:`FileReader`).
        start, stop: entry range, as in Python slicing; all events if both are None.

    Returns:
        An awkward array of records with one field per branch (jagged for the objects).
    """
    with uproot.open(path) as file:
        return _read_branches(_events_tree(file, path), start, stop)


def _collection(events: ak.Array, prefix: str, passes_id) -> ak.Array:
    """Jagged (pt, eta, phi) records of the objects of ``prefix`` that pass the identification."""
    objects = ak.zip({field: events[f"{prefix}_{field}"] for field in cms_ad.FEATURES})
    return objects[passes_id]


def nanoaod_to_arrays(events: ak.Array) -> tuple[np.ndarray, np.ndarray]:
    """The object table and generator weights of NanoAOD events.

    Applies the identification (``IDENTIFICATION``); the kinematic selection, pT ordering and
    zero padding happen in :func:`data_fetch.cms_ad.build_objects`, shared with the offline source.

    Args:
        events: what :func:`read_nanoaod` returns.

    Returns:
        (objects float32 ``(n, 19, 3)``, weight float32 ``(n,)``).
    """
    electrons = _collection(events, "Electron", events.Electron_cutBased >= ELECTRON_MIN_CUT_BASED)
    muons = _collection(events, "Muon", events.Muon_looseId & (events.Muon_pfRelIso04_all < MUON_MAX_REL_ISO))
    jets = _collection(events, "Jet", events.Jet_jetId >= JET_MIN_JET_ID)
    objects = cms_ad.build_objects(ak.to_numpy(events.MET_pt), ak.to_numpy(events.MET_phi), electrons, muons, jets)
    return objects, ak.to_numpy(events.genWeight).astype(np.float32)


# ------------------------------------------------------------------ which events a seed reads
def events_per_record(spec: DatasetSpec, n_events: int) -> list[int]:
    """``round(fraction * n_events)`` per record; rounding leftovers go to the first one."""
    counts = [round(record.fraction * n_events) for record in spec.opendata_records]
    counts[0] += n_events - sum(counts)
    return counts


def window_sizes(spec: DatasetSpec) -> list[int]:
    """Events of each record in one seed's window: ``fraction * EVENTS_PER_WINDOW``."""
    return events_per_record(spec, EVENTS_PER_WINDOW)


@dataclass
class RecordPlan:
    """Where one record's events for one load come from."""

    record: OpenDataRecord
    count: int  # events wanted from this record
    files: list[RemoteFile]  # usable files, in listing order
    skipped: list[str]  # one line per file left out, and why
    available: int | None  # events of the record, as its metadata states (None: not stated)


def _plan_record(record: OpenDataRecord, count: int, server: str) -> RecordPlan:
    record_json = with_retries(f"listing record {record.recid}", lambda: fetch_record_json(record.recid, server))
    available = record_json["metadata"].get("distribution", {}).get("number_events")
    available = available if isinstance(available, int) else None
    usable, skipped = [], []
    for remote in files_of_record(record_json, server):
        if remote.availability != "online":
            line = f"{remote.name}: availability {remote.availability!r}, not 'online'"
            print(f"data_fetch: record {record.recid}: skipping {line}; going on with the next file")
            skipped.append(line)
        else:
            usable.append(remote)
    return RecordPlan(record, count, usable, skipped, available)


def record_size(plan: RecordPlan, reader: FileReader) -> int:
    """Events of the record: as its metadata states, else counted in its files (their headers only)."""
    if plan.available is not None:
        return plan.available
    total = 0
    for remote in plan.files:
        with contextlib.suppress(FileNotFoundError):  # skipped later, with a line
            total += reader.num_entries(remote)
    return total


def number_of_windows(sizes: list[int], windows: list[int]) -> int:
    """Whole windows every record can fill."""
    return min(size // window for size, window in zip(sizes, windows, strict=True))


def window_of_seed(seed: int, n_windows: int) -> int:
    """The window seed ``seed`` reads."""
    return seed % n_windows


@dataclass
class Piece:
    """Events ``start`` to ``stop`` of one file: one reading task."""

    remote: RemoteFile
    start: int
    stop: int


def locate(plan: RecordPlan, first: int, reader: FileReader) -> tuple[list[Piece], list[str]]:
    """The file pieces that hold events ``first`` to ``first + plan.count`` of the record.

    Files are counted in listing order from their headers, read remotely (the description of their
    branches, a few MB for a full NanoAOD file); in download mode only the files that hold events of
    the window are downloaded. A file that answers 404, or that fails its checksum twice when
    downloaded, is skipped with one line and its events are not counted: the windows after it move
    forward, which the metadata of the sample records (``skipped``).
    """
    pieces, skipped = [], list(plan.skipped)
    passed = 0  # events in usable files before the current one
    stop = first + plan.count

    def skip(remote: RemoteFile, reason: str) -> None:
        line = f"{remote.name}: {reason}"
        print(
            f"data_fetch: record {plan.record.recid}: skipping {line}; going on with the next file (the events "
            "of the files after it move forward by its events: compare a sample's metadata before pairing it "
            "with samples made while the file was readable)"
        )
        skipped.append(line)

    for remote in plan.files:
        if passed >= stop:
            break
        try:
            entries = reader.num_entries(remote)
            low, high = max(first, passed), min(stop, passed + entries)
            if low < high and reader.mode == "download":
                reader.local_path(remote)  # download and check it now, so that a bad file is skipped here
        except FileNotFoundError:
            skip(remote, "HTTP 404, not found")
            continue
        except ChecksumMismatchError:
            skip(remote, "checksum failed twice")
            continue
        if low < high:
            pieces.append(Piece(remote, low - passed, high - passed))
        passed += entries
    have = sum(piece.stop - piece.start for piece in pieces)
    if have < plan.count:
        raise _too_few_events(plan.record, passed, plan.count, first, skipped)
    return pieces, skipped


def _smaller_than_a_window(plan: RecordPlan, size: int, window_events: int) -> DataFetchError:
    message = (
        f"record {plan.record.recid} ({plan.record.title}) holds {size} events, fewer than one seed's window "
        f"takes from it ({window_events}: its share {plan.record.fraction:g} of {EVENTS_PER_WINDOW}), so the "
        'open-data source cannot serve this dataset; use source="pythia"'
    )
    if plan.skipped:
        message += f" (files left out: {'; '.join(plan.skipped)})"
    return DataFetchError(message)


def _too_few_events(
    record: OpenDataRecord, readable: int, count: int, first: int, skipped: list[str]
) -> DataFetchError:
    why = (
        f"files were left out ({'; '.join(skipped)})" if skipped else "its files hold fewer events than it states"
    )
    return DataFetchError(
        f"record {record.recid} ({record.title}) has {readable} readable events, but this seed's window needs "
        f"its events {first} to {first + count}: {why}. Try another seed (seeds equal to a smaller window "
        'number read earlier events), or source="pythia"'
    )


# ------------------------------------------------------------------ what dataset.load calls
def cache_description(spec: DatasetSpec, n_events: int, seed: int) -> dict:
    """Everything the arrays depend on; its hash is the cache key. Needs no network.

    How files are read (remote or downloaded) and on which workers does not change the arrays,
    so it is not part of the key.
    """
    return {
        "dataset": spec.name,
        "source": "opendata",
        "n_events": int(n_events),
        "seed": int(seed),
        "server": server_url(),
        "tree": TREE,
        "branches": BRANCHES,
        "identification": IDENTIFICATION,
        "selection": cms_ad.SELECTION,
        "events_per_window": EVENTS_PER_WINDOW,
        "records": [(r.recid, r.process_code, r.label, r.fraction) for r in spec.opendata_records],
    }


def produce(
    spec: DatasetSpec,
    n_events: int,
    seed: int,
    progress: bool = True,
    workers: int | None = None,
    scheduler: str | None = None,
    read: str | None = None,
) -> tuple[dict, dict]:
    """Read ``n_events`` events of ``spec`` from the portal and convert them.

    Events: each record is cut into windows of ``fraction * EVENTS_PER_WINDOW`` consecutive events
    (listing order, files that cannot be read left out). Seed ``s`` reads window ``s mod W``, where
    W is the number of whole windows every record holds, from its start, and shuffles the events
    with ``default_rng(s)``. So two seeds that differ modulo W never share an event, whatever their
    sizes (``python -m data_fetch check-portal`` checks that the course's own training and held-out
    seeds do).

    Args:
        spec: the dataset (its ``opendata_records`` say which records, in which fractions).
        n_events: total number of events, at most ``EVENTS_PER_WINDOW``.
        seed: selects the window, then the order of the events.
        progress: show progress bars.
        workers: Dask workers of the LocalCluster (one per core if None); 1 reads in this process.
        scheduler: a Dask scheduler's address (see :mod:`data_fetch.cluster`); the LocalCluster if None.
        read: ``"remote"`` (byte ranges of the branches needed, the default) or ``"download"`` (whole
            files into the cache first, checked, then read from disk, in this process whatever
            ``workers`` and ``scheduler`` say); ``$MLHEP_OPENDATA_READ`` if None.

    Returns:
        (arrays, metadata): the arrays of ``spec.schema``; metadata names the server, the window and,
        per record, the file pieces read and the files left out.
    """
    from . import cluster

    mode = read_mode(read)
    if n_events > EVENTS_PER_WINDOW:
        raise DataFetchError(
            f"one seed reads at most {EVENTS_PER_WINDOW} events of the open data (its window), not {n_events}: "
            "load several seeds and concatenate them (their events never overlap)"
        )
    server = server_url()
    counts = events_per_record(spec, n_events)
    plans = [
        _plan_record(record, count, server) for record, count in zip(spec.opendata_records, counts, strict=True)
    ]
    windows = window_sizes(spec)
    folders = [cache.cache_root() / "opendata" / str(plan.record.recid) for plan in plans]
    if mode == "download":  # whole files go there; a remote read writes only the arrays (dataset.load)
        folders = [cache.ensure_writable(folder) for folder in folders]
    readers = [FileReader(mode, folder, progress) for folder in folders]
    try:  # the remote files stay open from counting to reading, and are closed whatever happens
        sizes = [record_size(plan, reader) for plan, reader in zip(plans, readers, strict=True)]
        for plan, size, window_events in zip(plans, sizes, windows, strict=True):
            if size < window_events:  # not even one window (CMS records state their size: nothing read yet)
                raise _smaller_than_a_window(plan, size, window_events)
        n_windows = number_of_windows(sizes, windows)
        window = window_of_seed(seed, n_windows)
        located, skipped = [], []  # per record: (its reader, its pieces), and the files left out
        for plan, reader, size in zip(plans, readers, windows, strict=True):
            pieces, left_out = locate(plan, window * size, reader)
            located.append((reader, pieces))
            skipped.append(left_out)
        engine = "in-process"
        if mode == "download" or (workers == 1 and not cluster.scheduler_address(scheduler)):
            events = [
                reader.read(piece.remote, piece.start, piece.stop)
                for reader, pieces in located
                for piece in pieces
            ]
        else:
            engine = "dask"
            events = read_on_dask(
                [piece for _, pieces in located for piece in pieces], workers, scheduler, progress
            )
    finally:
        for reader in readers:
            reader.close()
    parts, records_read, position = [], [], 0
    for plan, (_, record_pieces), left_out in zip(plans, located, skipped, strict=True):
        if plan.count == 0:  # e.g. 2 events in all: round(0.2 * 2) = 0 from the signal record
            continue
        record_events = ak.concatenate(events[position : position + len(record_pieces)])
        position += len(record_pieces)
        objects, weight = nanoaod_to_arrays(record_events)
        parts.append(
            {
                "objects": objects,
                "weight": weight,
                "label": np.full(plan.count, plan.record.label, dtype=np.int8),
                "process": np.full(plan.count, plan.record.process_code, dtype=np.int8),
            }
        )
        records_read.append(
            {
                "recid": plan.record.recid,
                "title": plan.record.title,
                "events": plan.count,
                "files": [
                    {
                        "file": p.remote.name,
                        "url": p.remote.url,
                        "entries": [p.start, p.stop],
                        "events": p.stop - p.start,
                    }
                    for p in record_pieces
                ],
                "skipped": left_out,
            }
        )
    arrays = {
        name: np.concatenate([part[name] for part in parts]).astype(schema.dtype, copy=False)
        for name, schema in spec.schema.items()
    }
    order = np.random.default_rng(seed).permutation(n_events)
    arrays = {name: values[order] for name, values in arrays.items()}
    metadata = {
        "server": server,
        "read": mode,
        "engine": engine,
        "window": window,
        "windows": n_windows,
        "records": records_read,
    }
    return arrays, metadata


def read_piece(piece: Piece) -> ak.Array:
    """One reading task, as a Dask worker runs it: the branches of one file piece, read remotely."""
    reader = FileReader("remote", Path(), progress=False)
    try:
        return reader.read(piece.remote, piece.start, piece.stop)
    finally:
        reader.close()


def read_on_dask(pieces: list[Piece], workers: int | None, scheduler: str | None, progress: bool) -> list:
    """The branches of every piece, read by Dask workers: one task per file piece.

    This is the partitioning of ``uproot.dask`` and coffea (one task per file chunk, only the
    columns needed); the tasks call ``uproot.open`` with ``HTTPSource`` themselves because
    ``uproot.dask`` expands every URL through fsspec, whose HTTP file system needs aiohttp. The
    results come back in the order of ``pieces``, so they equal reading the pieces one by one.
    """
    from . import cluster

    with cluster.client(workers, scheduler) as dask_client:
        sizes = [piece.stop - piece.start for piece in pieces]
        # No retries by Dask: each task already tries transient errors again (with_retries), and a
        # missing file or branch will not appear by asking again.
        return cluster.run_tasks(read_piece, pieces, sizes, dask_client, "open data", progress, retries=0)


# ------------------------------------------------------------------ a check before class
def check_portal(n_events: int = 100, spec: DatasetSpec = CMS_AD, echo: Callable[[str], None] = print) -> bool:
    """Try what the ``opendata`` source needs, on this machine's network, and say what worked.

    For each record of ``spec``: fetch its listing, open its first online file remotely and read
    ``n_events`` events of the branches this source uses, then convert them. One line per step, with
    the time and bytes it took, or why it failed. ``python -m data_fetch check-portal`` runs it.

    Returns:
        True if every step worked.
    """
    echo(f"CERN Open Data portal: {server_url()} (set ${SERVER_VARIABLE} to use another)")
    all_ok = True
    sizes: list[int | None] = []
    for record in spec.opendata_records:
        start = time.perf_counter()
        try:
            record_json = fetch_record_json(record.recid)
            files = files_of_record(record_json, server_url())
        except DataFetchError as exc:
            echo(f"FAILED record {record.recid}: listing: {exc}")
            all_ok = False
            sizes.append(None)
            continue
        stated = record_json["metadata"].get("distribution", {}).get("number_events")
        sizes.append(stated if isinstance(stated, int) else None)
        online = [remote for remote in files if remote.availability == "online"]
        echo(
            f"ok     record {record.recid}: {len(files)} ROOT files listed ({len(online)} online, "
            f"{sum(f.size for f in files) / 1e9:.1f} GB) in {time.perf_counter() - start:.1f} s"
        )
        if not online:
            echo(f"FAILED record {record.recid}: no file is online")
            all_ok = False
            continue
        remote = online[0]
        start = time.perf_counter()
        try:
            with open_remote(remote.url) as file:
                tree = _events_tree(file, remote.url)
                events = _read_branches(tree, 0, n_events)
                entries, moved = tree.num_entries, file.file.source.num_requested_bytes
            objects, _ = nanoaod_to_arrays(events)
        except Exception as exc:  # report every kind of failure, then go on with the next record
            echo(f"FAILED record {record.recid}: reading {remote.url}: {type(exc).__name__}: {str(exc)[:300]}")
            all_ok = False
            continue
        echo(
            f"ok     record {record.recid}: read {len(objects)} of {entries} events of {remote.name} "
            f"({moved / 1e6:.1f} MB of {remote.size / 1e6:.0f} MB) in {time.perf_counter() - start:.1f} s"
        )
    all_ok &= _check_course_seeds(spec, sizes, echo)
    echo("everything the open-data source needs works" if all_ok else 'some steps failed: use source="pythia"')
    return all_ok


def _check_course_seeds(spec: DatasetSpec, sizes: list[int | None], echo: Callable[[str], None]) -> bool:
    """Do the course's own seeds of ``spec`` (training samples, held-out stand-in) read disjoint windows?"""
    from . import manifest

    if any(size is None for size in sizes):
        echo(f"skipped: a record of {spec.name} does not state its number of events, so its windows are unknown")
        return True
    windows = window_sizes(spec)
    n_windows = number_of_windows([int(size) for size in sizes if size is not None], windows)
    if n_windows == 0:
        echo(f"FAILED {spec.name}: a record holds fewer events than one window ({EVENTS_PER_WINDOW} events)")
        return False
    seeds = {sample.seed for sample in manifest.SAMPLES if sample.dataset == spec.name and sample.seed is not None}
    seeds.add(manifest.STAND_IN_SEEDS[spec.name])
    by_window: dict[int, list[int]] = {}
    for seed in sorted(seeds):
        by_window.setdefault(window_of_seed(seed, n_windows), []).append(seed)
    shared = [group for group in by_window.values() if len(group) > 1]
    listing = ", ".join(f"seed {seed} -> window {window_of_seed(seed, n_windows)}" for seed in sorted(seeds))
    if shared:
        echo(f"FAILED {spec.name}: {n_windows} windows; the course's seeds share events ({listing})")
        return False
    echo(
        f"ok     {spec.name}: {n_windows} windows of {EVENTS_PER_WINDOW} events; the course's seeds read "
        f"disjoint events ({listing})"
    )
    return True
