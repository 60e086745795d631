"""The `opendata` source: real CMS simulation (NanoAOD) from the CERN Open Data portal.

What it does, step by step:

1. **List** the ROOT files of each record of the dataset (``spec.opendata_records``) through
   the portal's API, ``{server}/api/records/{recid}``. The server is
   ``$MLHEP_OPENDATA_SERVER`` or ``https://opendata.cern.ch``. Records list their files as
   ``root://eospublic.cern.ch//eos/opendata/...`` (XRootD) with a size and an adler32
   checksum; large records group them in file indices. The portal serves the same files over
   HTTPS as ``{server}/eos/opendata/...``, which is what we download (no XRootD needed).
2. **Download** only as many files as the requested number of events needs, into
   ``<cache>/opendata/<recid>/<file name>``. A download goes to ``<name>.partial`` and is
   renamed only once its size and checksum match the listing, so a file under its final name
   is always complete. An interrupted download resumes from the ``.partial`` file (HTTP Range
   request) the next time.
3. **Read** the NanoAOD branches of tree ``Events`` with uproot, apply the CMS object
   identification below, and build the object table with :func:`data_fetch.cms_ad.build_objects`
   (which applies the kinematic selection shared with the offline source).

Object identification (standard NanoAOD flags):

* electrons: ``Electron_cutBased >= 2`` (cut-based ID, "loose" working point or tighter);
* muons: ``Muon_looseId`` and ``Muon_pfRelIso04_all < 0.25`` (loose ID, loose PF isolation);
* jets: ``Jet_jetId >= 2`` (tight jet ID bit set).

Events: ``round(fraction * n_events)`` from each record (rounding leftovers to the first),
taken from the start of the record's files in listing order, concatenated, then shuffled with
``np.random.default_rng(seed)``. The seed changes only the order: the events themselves are
the first ones of each record.
"""

from __future__ import annotations

import os
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
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


@dataclass(frozen=True)
class RemoteFile:
    """One file of a record, as the portal lists it."""

    url: str  # HTTP(S) address to download it from
    size: int  # bytes
    checksum: str  # as listed, e.g. "adler32:0a1b2c3d"

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
        "unreachable)."
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
    except (requests.ConnectionError, requests.Timeout) as exc:
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
    # cernopendata-client 1.0 returns (address, size, checksum) tuples.
    listing = searcher.get_files_list(server=server, record_json=record, protocol="https", expand=True)
    files = [
        RemoteFile(url, int(size), checksum)
        for url, size, checksum in listing
        if url.startswith(("http://", "https://")) and url.endswith(".root")
    ]
    if not files:
        raise DataFetchError(
            f"record {record['metadata'].get('recid')} on {server} lists no ROOT file "
            'that can be downloaded over HTTP(S); use source="pythia"'
        )
    return files


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
    algorithm, _, expected = remote.checksum.partition(":")
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
                message = str(_unreachable(_origin(remote.url), reason))
                if have:  # keep what arrived: the next call continues from there
                    message += (
                        f" The {have} bytes received so far are kept in {partial}; the next "
                        "attempt resumes from there."
                    )
                else:
                    partial.unlink(missing_ok=True)
                raise SourceUnavailableError(message) from None
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


# ------------------------------------------------------------------ NanoAOD -> object table
def count_events(path: Path) -> int:
    """Number of events (entries of tree ``Events``) in a NanoAOD file."""
    with uproot.open(path) as file:
        return int(file[TREE].num_entries)


def read_nanoaod(path: Path, n_events: int | None = None) -> ak.Array:
    """Read the branches this source needs (``BRANCHES``) for the first ``n_events`` events.

    Args:
        path: a NanoAOD ROOT file.
        n_events: how many events from the start; all if None.

    Returns:
        An awkward array of records with one field per branch (jagged for the objects).
    """
    with uproot.open(path) as file:
        tree = file[TREE]
        missing = [branch for branch in BRANCHES if branch not in tree]
        if missing:
            raise DataFetchError(f"{path} has no branch {', '.join(missing)}: is it a CMS NanoAOD file?")
        return tree.arrays(list(BRANCHES), entry_stop=n_events, library="ak")


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


# ------------------------------------------------------------------ what dataset.load calls
def events_per_record(spec: DatasetSpec, n_events: int) -> list[int]:
    """``round(fraction * n_events)`` per record; rounding leftovers go to the first one."""
    counts = [round(record.fraction * n_events) for record in spec.opendata_records]
    counts[0] += n_events - sum(counts)
    return counts


def cache_description(spec: DatasetSpec, n_events: int, seed: int) -> dict:
    """Everything the arrays depend on; its hash is the cache key. Needs no network."""
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
        "records": [(r.recid, r.process_code, r.label, r.fraction) for r in spec.opendata_records],
    }


def _read_record(
    record: OpenDataRecord, count: int, n_events: int, server: str, progress: bool
) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """The first ``count`` events of ``record``, downloading only the files they need."""
    folder = cache.ensure_writable(cache.cache_root() / "opendata" / str(record.recid))
    record_json = fetch_record_json(record.recid, server)
    # CMS records state their number of events: refuse too large a request before downloading
    # gigabytes for nothing. (If they do not, the check after reading the files catches it.)
    available = record_json["metadata"].get("distribution", {}).get("number_events")
    if isinstance(available, int) and available < count:
        raise _too_few_events(record, available, count, n_events)
    remote_files = files_of_record(record_json, server)
    objects, weights, files_read = [], [], []
    have = 0
    for remote in remote_files:
        if have >= count:
            break
        path = download_file(remote, folder, progress)
        take = min(count_events(path), count - have)
        table, weight = nanoaod_to_arrays(read_nanoaod(path, take))
        objects.append(table)
        weights.append(weight)
        files_read.append({"file": remote.name, "url": remote.url, "events": take})
        have += take
    if have < count:
        raise _too_few_events(record, have, count, n_events)
    return np.concatenate(objects), np.concatenate(weights), files_read


def _too_few_events(record: OpenDataRecord, available: int, count: int, n_events: int) -> DataFetchError:
    return DataFetchError(
        f"record {record.recid} ({record.title}) has only {available} events, fewer than the {count} "
        f"that n_events={n_events} needs from it; ask for at most {int(available / record.fraction)} events"
    )


def produce(spec: DatasetSpec, n_events: int, seed: int, progress: bool = True) -> tuple[dict, dict]:
    """Download (as needed) and convert ``n_events`` events of ``spec`` from the portal.

    Args:
        spec: the dataset (its ``opendata_records`` say which records, in which fractions).
        n_events: total number of events.
        seed: seed of the final shuffle.
        progress: show tqdm download bars.

    Returns:
        (arrays, metadata): the arrays of ``spec.schema``; metadata names the server and, per
        record, the files read and how many events each gave.
    """
    server = server_url()
    parts, records_read = [], []
    for record, count in zip(spec.opendata_records, events_per_record(spec, n_events), strict=True):
        if count == 0:
            continue
        objects, weight, files_read = _read_record(record, count, n_events, server, progress)
        parts.append(
            {
                "objects": objects,
                "weight": weight,
                "label": np.full(count, record.label, dtype=np.int8),
                "process": np.full(count, record.process_code, dtype=np.int8),
            }
        )
        records_read.append({"recid": record.recid, "title": record.title, "events": count, "files": files_read})
    arrays = {
        name: np.concatenate([part[name] for part in parts]).astype(schema.dtype, copy=False)
        for name, schema in spec.schema.items()
    }
    order = np.random.default_rng(seed).permutation(n_events)
    arrays = {name: values[order] for name, values in arrays.items()}
    return arrays, {"server": server, "records": records_read}
