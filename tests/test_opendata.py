"""The `opendata` source against a fake CERN Open Data portal on 127.0.0.1 (fully offline).

The fake portal answers ``/api/records/<recid>`` like the real one (files with uri, size and
adler32 checksum; the QCD record lists its files through a file index) and serves small
NanoAOD-shaped ROOT files written here with uproot. It records every request, and it can
misbehave on purpose: cut a transfer short, ignore Range requests, serve a shorter file.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import awkward as ak
import numpy as np
import pytest
import uproot

import data_fetch
from data_fetch import dataset, opendata
from data_fetch.errors import ChecksumMismatchError, DataFetchError, SourceUnavailableError
from data_fetch.registry import CMS_AD

QCD_RECID, SIGNAL_RECID = 63168, 33703
QCD_FOLDER = (
    "/eos/opendata/cms/mc/RunIISummer20UL16NanoAODv9/QCD_Pt-15to7000_TuneCP5_Flat2018_13TeV_pythia8"
    "/NANOAODSIM/106X_mcRun2_asymptotic_v17-v1/120000"
)
N_QCD_PER_FILE, N_SIGNAL = 200, 150

# ---------------------------------------------------------------- NanoAOD-shaped test files
FIELDS = {
    "Electron": (("pt", np.float32), ("eta", np.float32), ("phi", np.float32), ("cutBased", np.int32)),
    "Muon": (
        ("pt", np.float32),
        ("eta", np.float32),
        ("phi", np.float32),
        ("looseId", np.bool_),
        ("pfRelIso04_all", np.float32),
    ),
    "Jet": (("pt", np.float32), ("eta", np.float32), ("phi", np.float32), ("jetId", np.int32)),
}

# Event 0 of the first QCD file, written by hand so the expected table can be worked out by hand.
HAND_EVENT = {
    "MET_pt": 123.5,
    "MET_phi": -0.75,
    "genWeight": 0.5,
    "Electron": [  # (pt, eta, phi, cutBased)
        (25.0, 0.5, 1.0, 4),  # passes
        (50.0, -1.0, -2.0, 2),  # passes (loose is enough)
        (40.0, 0.1, 0.3, 1),  # fails the ID (veto only)
        (8.0, 0.2, 0.2, 4),  # fails pT > 10
        (30.0, 2.6, 0.1, 3),  # fails |eta| < 2.5
    ],
    "Muon": [  # (pt, eta, phi, looseId, pfRelIso04_all)
        (15.0, 2.3, 0.4, True, 0.05),  # passes
        (60.0, -0.3, 2.5, True, 0.10),  # passes
        (35.0, 0.0, 1.5, False, 0.01),  # fails looseId
        (45.0, 1.0, -1.0, True, 0.30),  # fails the isolation
        (20.0, 2.45, 0.0, True, 0.0),  # fails |eta| < 2.4 (muons)
    ],
    "Jet": [  # (pt, eta, phi, jetId)
        (90.0, 0.1, 0.1, 6),
        (400.0, 0.0, 0.0, 0),
        (300.0, 1.0, 1.0, 6),
        (60.0, 0.6, 0.6, 2),
        (250.0, -1.0, -1.0, 2),
        (25.0, 0.3, 0.3, 6),
        (200.0, 0.5, 0.5, 6),
        (50.0, 0.7, 0.7, 6),
        (150.0, -0.5, -0.5, 6),
        (500.0, 3.0, 0.2, 6),
        (120.0, 1.5, 1.5, 6),
        (350.0, 0.2, 0.2, 1),
        (100.0, -1.5, -1.5, 6),
        (80.0, 2.0, 2.0, 6),
        (70.0, -2.0, -2.0, 6),
    ],
}
# Worked out by hand from HAND_EVENT: slot 0 MET, 1-4 electrons, 5-8 muons, 9-18 jets, pT-ordered.
HAND_TABLE = np.array(
    [
        (123.5, 0.0, -0.75),
        (50.0, -1.0, -2.0),
        (25.0, 0.5, 1.0),
        (0, 0, 0),
        (0, 0, 0),
        (60.0, -0.3, 2.5),
        (15.0, 2.3, 0.4),
        (0, 0, 0),
        (0, 0, 0),
        # 11 jets pass (400 fails jetId 0, 350 jetId 1 = loose only, 500 |eta| 3, 25 pT):
        # the ten hardest are kept, the 50 GeV one is dropped.
        (300.0, 1.0, 1.0),
        (250.0, -1.0, -1.0),
        (200.0, 0.5, 0.5),
        (150.0, -0.5, -0.5),
        (120.0, 1.5, 1.5),
        (100.0, -1.5, -1.5),
        (90.0, 0.1, 0.1),
        (80.0, 2.0, 2.0),
        (70.0, -2.0, -2.0),
        (60.0, 0.6, 0.6),
    ],
    dtype=np.float32,
)


def _random_objects(rng: np.random.Generator, kind: str, n: int) -> dict:
    """Sensible random values; many objects fail the ID or the kinematic cuts."""
    columns = {
        "pt": 5 + rng.exponential(40.0, n),
        "eta": rng.uniform(-3, 3, n),
        "phi": rng.uniform(-np.pi, np.pi, n),
    }
    if kind == "Electron":
        columns["cutBased"] = rng.integers(0, 5, n)
    elif kind == "Muon":
        columns["looseId"] = rng.random(n) < 0.8
        columns["pfRelIso04_all"] = rng.exponential(0.15, n)
    else:
        columns["jetId"] = rng.choice([0, 2, 6], n, p=[0.1, 0.2, 0.7])
    return columns


def write_nanoaod(path: Path, n_events: int, seed: int, signal: bool, hand_event: dict | None = None) -> None:
    """A NanoAOD-shaped file: tree Events, nElectron + Electron_* jagged branches, etc."""
    rng = np.random.default_rng(seed)
    branches = {
        "MET_pt": rng.exponential(50.0, n_events).astype(np.float32),
        "MET_phi": rng.uniform(-np.pi, np.pi, n_events).astype(np.float32),
        "genWeight": (np.ones(n_events) if signal else rng.lognormal(0, 1, n_events)).astype(np.float32),
    }
    for kind, fields in FIELDS.items():
        counts = rng.poisson({"Electron": 0.7, "Muon": 0.5, "Jet": 6.0}[kind], n_events)
        if hand_event is not None:
            counts[0] = 0
        columns = _random_objects(rng, kind, int(counts.sum()))
        if hand_event is not None:
            hand = list(zip(*hand_event[kind], strict=True))
            columns = {name: np.concatenate([hand[k], columns[name]]) for k, (name, _) in enumerate(fields)}
            counts[0] = len(hand_event[kind])
        branches[kind] = ak.zip(
            {name: ak.unflatten(np.asarray(columns[name], dtype=dtype), counts) for name, dtype in fields}
        )
    if hand_event is not None:
        for name in ("MET_pt", "MET_phi", "genWeight"):
            branches[name][0] = hand_event[name]
    with uproot.recreate(path) as file:
        # NanoAOD naming: counter nElectron, branches Electron_pt, Electron_eta, ...
        file.mktree(
            "Events",
            branches,
            counter_name=lambda counted: f"n{counted}",
            field_name=lambda outer, inner: f"{outer}_{inner}",
        )


@pytest.fixture(scope="module")
def root_files(tmp_path_factory) -> dict:
    """name -> bytes of the three test files (two QCD, one signal)."""
    folder = tmp_path_factory.mktemp("nanoaod")
    write_nanoaod(folder / "qcd_1.root", N_QCD_PER_FILE, 1, signal=False, hand_event=HAND_EVENT)
    write_nanoaod(folder / "qcd_2.root", N_QCD_PER_FILE, 2, signal=False)
    write_nanoaod(folder / "signal_1.root", N_SIGNAL, 3, signal=True)
    return {path.name: path.read_bytes() for path in sorted(folder.glob("*.root"))}


# ---------------------------------------------------------------- the fake portal
def _entry(uri: str, data: bytes) -> dict:
    return {
        "uri": uri,
        "size": len(data),
        "checksum": f"adler32:{zlib.adler32(data) & 0xFFFFFFFF:08x}",
        "key": uri.rsplit("/", 1)[-1],
    }


class FakePortal:
    """What the fake server serves and how it behaves; tests change it freely."""

    def __init__(self, root_files: dict):
        self.url = ""  # set once the server listens
        self.files = {
            f"{QCD_FOLDER}/qcd_1.root": root_files["qcd_1.root"],
            f"{QCD_FOLDER}/qcd_2.root": root_files["qcd_2.root"],
            "/files/signal_1.root": root_files["signal_1.root"],
        }
        self.records: dict = {}
        self.requests: list = []  # (path, Range header or None), in order
        self.supports_range = True
        self.cuts: dict = {}  # path -> [bytes sent before the connection dies, answers left to cut]
        self.status = 200  # another value: every answer is this HTTP error
        self.flaky: dict = {}  # path -> how many more requests get HTTP 502 before it answers
        self.bytes_sent: dict = {}  # path -> bytes of the file sent so far

    def build_records(self) -> None:
        """Record JSON shaped like https://opendata.cern.ch/api/records/<recid>."""
        root = "root://eospublic.cern.ch/"
        qcd = [_entry(root + path, self.files[path]) for path in sorted(self.files) if "QCD" in path]
        self.records[QCD_RECID] = {
            "id": QCD_RECID,
            "links": {"self": f"{self.url}/api/records/{QCD_RECID}"},
            "metadata": {
                "recid": QCD_RECID,
                "title": CMS_AD.opendata_records[0].title,
                "distribution": {
                    "formats": ["nanoaodsim", "root"],
                    "number_events": 2 * N_QCD_PER_FILE,
                    "number_files": len(qcd),
                    "size": sum(f["size"] for f in qcd),
                },
                "files": [],
                # Large records list their ROOT files in file indices, with the files inline.
                "_file_indices": [
                    {
                        "key": "CMS_mc_RunIISummer20UL16NanoAODv9_QCD_file_index.json",
                        "number_files": len(qcd),
                        "size": sum(f["size"] for f in qcd),
                        "files": qcd,
                    }
                ],
            },
        }
        config = b"import FWCore.ParameterSet.Config as cms\n"
        self.records[SIGNAL_RECID] = {
            "id": SIGNAL_RECID,
            "links": {"self": f"{self.url}/api/records/{SIGNAL_RECID}"},
            "metadata": {
                "recid": SIGNAL_RECID,
                "title": CMS_AD.opendata_records[1].title,
                "files": [
                    # an address that is already http: used as it is
                    {
                        **_entry(f"{self.url}/files/signal_1.root", self.files["/files/signal_1.root"]),
                        "bucket": "4997a85c",
                        "version_id": "x",
                    },
                    # not a ROOT file: ignored
                    _entry(root + "/eos/opendata/cms/configuration-files/configFile.py", config),
                ],
                "_file_indices": [],
            },
        }

    def hits(self, name: str) -> list:
        """Range headers of the requests for the file named ``name`` (None: no Range)."""
        return [rng for path, rng in self.requests if path.endswith("/" + name)]


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output quiet
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.send_response(status)
        for key, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self):  # uproot asks for a remote file's size first
        self._answer(head=True)

    def do_GET(self):
        self._answer(head=False)

    def _answer(self, head: bool):
        portal: FakePortal = self.server.portal
        path = urlsplit(self.path).path
        range_header = self.headers.get("Range")
        portal.requests.append((path, range_header) if not head else (path, "HEAD"))
        if portal.status != 200:
            return self._send(portal.status, b"portal down for maintenance")
        if path in portal.flaky and portal.flaky[path] > 0:  # a transient error, as /eos sometimes gives
            portal.flaky[path] -= 1
            return self._send(502, b"bad gateway")
        if path.startswith("/api/records/"):
            record = portal.records.get(int(path.rsplit("/", 1)[-1]))
            if record is None:
                return self._send(404, b'{"status": 404, "message": "PID does not exist."}')
            return self._send(200, json.dumps(record).encode(), {"Content-Type": "application/json"})
        data = portal.files.get(path)
        if data is None:
            return self._send(404, b"not found")
        portal.bytes_sent[path] = portal.bytes_sent.get(path, 0)
        if head:
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            return None
        ranges = []
        if range_header and portal.supports_range:
            for part in range_header.removeprefix("bytes=").split(","):
                first, _, last = part.strip().partition("-")
                ranges.append((int(first), min(int(last), len(data) - 1) if last else len(data) - 1))
            if ranges[0][0] >= len(data):
                return self._send(416, headers={"Content-Range": f"bytes */{len(data)}"})
        if len(ranges) > 1:  # several ranges in one request: a multipart/byteranges answer
            boundary = "fakeportalboundary"
            body = b"".join(
                f"--{boundary}\r\nContent-Type: application/octet-stream\r\n"
                f"Content-Range: bytes {a}-{b}/{len(data)}\r\n\r\n".encode()
                + data[a : b + 1]
                + b"\r\n"
                for a, b in ranges
            )
            body += f"--{boundary}--\r\n".encode()
            portal.bytes_sent[path] += sum(b - a + 1 for a, b in ranges)
            return self._send(206, body, {"Content-Type": f"multipart/byteranges; boundary={boundary}"})
        if ranges:
            start, stop = ranges[0][0], ranges[0][1] + 1
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{len(data)}")
        else:
            start, stop = 0, len(data)
            self.send_response(200)
        body = data[start:stop]
        self.send_header("Content-Length", str(len(body)))
        if portal.supports_range:
            self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        cut = portal.cuts.get(path)
        if cut and cut[1] > 0:  # send part of the body, then drop the connection
            cut[1] -= 1
            body = body[: cut[0]]
            self.close_connection = True
        portal.bytes_sent[path] += len(body)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(body)
        return None


def _closed_port_url() -> str:
    """An address on which nothing listens (connection refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def portal(root_files, monkeypatch, tmp_path):
    """A running fake portal; MLHEP_OPENDATA_SERVER and MLHEP_DATA_DIR point at it and tmp_path."""
    fake = FakePortal(root_files)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.portal = fake
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    fake.build_records()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    monkeypatch.setenv("MLHEP_OPENDATA_SERVER", fake.url)
    monkeypatch.setenv("MLHEP_DATA_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(opendata, "RETRY_PAUSE_SECONDS", 0.0)
    monkeypatch.setattr(opendata, "BACKOFF_SECONDS", 0.0)
    # Windows of 250 events: 200 QCD (one file) and 50 signal; the records hold 2 and 3 of them, so a
    # seed reads window seed mod 2.
    monkeypatch.setattr(opendata, "EVENTS_PER_WINDOW", 250)
    yield fake
    server.shutdown()
    server.server_close()


def _cache_files(tmp_path: Path) -> list:
    return sorted(p.relative_to(tmp_path) for p in (tmp_path / "cache").rglob("*") if p.is_file())


# ---------------------------------------------------------------- listing
def test_listing_expands_file_index_and_rewrites_root_uris(portal, root_files):
    files = opendata.list_record_files(QCD_RECID)
    assert [f.url for f in files] == [f"{portal.url}{QCD_FOLDER}/{name}" for name in ("qcd_1.root", "qcd_2.root")]
    for remote, name in zip(files, ("qcd_1.root", "qcd_2.root"), strict=True):
        data = root_files[name]
        assert remote.name == name
        assert remote.size == len(data)
        assert remote.checksum == f"adler32:{zlib.adler32(data):08x}"


def test_listing_keeps_http_uris_and_skips_non_root_files(portal, root_files):
    (remote,) = opendata.list_record_files(SIGNAL_RECID)
    assert remote.url == f"{portal.url}/files/signal_1.root"
    assert remote.size == len(root_files["signal_1.root"])


def test_listing_of_unknown_record_says_so(portal):
    with pytest.raises(DataFetchError, match="HTTP 404 for record 1"):
        opendata.list_record_files(1)


def test_default_server_and_trailing_slash(monkeypatch):
    monkeypatch.delenv("MLHEP_OPENDATA_SERVER", raising=False)
    assert opendata.server_url() == "https://opendata.cern.ch"
    monkeypatch.setenv("MLHEP_OPENDATA_SERVER", "http://localhost:8000/")
    assert opendata.server_url() == "http://localhost:8000"


# ---------------------------------------------------------------- downloads
def test_download_writes_checked_file_then_reuses_it(portal, root_files, tmp_path):
    remote = opendata.list_record_files(QCD_RECID)[0]
    folder = tmp_path / "cache" / "opendata" / str(QCD_RECID)
    path = opendata.download_file(remote, folder, progress=False)
    assert path == folder / "qcd_1.root"
    assert path.read_bytes() == root_files["qcd_1.root"]
    assert not list(folder.glob("*.partial"))
    assert opendata.download_file(remote, folder, progress=False) == path
    assert portal.hits("qcd_1.root") == [None]  # one download, no second request


def test_wrong_checksum_in_listing_refetches_once_then_fails_clearly(portal, tmp_path):
    entry = portal.records[SIGNAL_RECID]["metadata"]["files"][0]
    entry["checksum"] = "adler32:0badc0de"
    (remote,) = opendata.list_record_files(SIGNAL_RECID)
    folder = tmp_path / "cache" / "opendata" / str(SIGNAL_RECID)
    with pytest.raises(ChecksumMismatchError) as error:
        opendata.download_file(remote, folder, progress=False)
    message = str(error.value)
    assert "signal_1.root" in message
    assert "0badc0de" in message
    assert "got adler32:" in message
    assert "Try again later" in message
    assert portal.hits("signal_1.root") == [None, None]  # the second time from scratch
    assert list(folder.iterdir()) == []  # neither the file nor a .partial is left


def test_server_sending_fewer_bytes_than_listed_is_reported(portal, root_files, tmp_path):
    size = len(root_files["qcd_2.root"])
    # The listing keeps the full size; the server's copy is 1000 bytes short (a complete HTTP answer).
    portal.files[f"{QCD_FOLDER}/qcd_2.root"] = root_files["qcd_2.root"][:-1000]
    remote = opendata.list_record_files(QCD_RECID)[1]
    folder = tmp_path / "cache" / "opendata" / str(QCD_RECID)
    with pytest.raises(ChecksumMismatchError, match=rf"expected {size} bytes, got {size - 1000}"):
        opendata.download_file(remote, folder, progress=False)
    assert portal.hits("qcd_2.root") == [None, None]
    assert list(folder.iterdir()) == []


def test_transfer_dying_midway_resumes_with_range(portal, root_files, tmp_path, monkeypatch):
    monkeypatch.setattr(opendata, "CHUNK_BYTES", 1024)  # a cut chunk is lost: cut at a chunk border
    data = root_files["qcd_1.root"]
    third = len(data) // 3 // 1024 * 1024
    portal.cuts[f"{QCD_FOLDER}/qcd_1.root"] = [third, 2]  # the first two answers die after a third
    remote = opendata.list_record_files(QCD_RECID)[0]
    folder = tmp_path / "cache" / "opendata" / str(QCD_RECID)
    path = opendata.download_file(remote, folder, progress=False)
    assert path.read_bytes() == data
    assert portal.hits("qcd_1.root") == [None, f"bytes={third}-", f"bytes={2 * third}-"]
    assert not list(folder.glob("*.partial"))


def test_connection_that_keeps_dying_is_reported_and_resumed_later(portal, root_files, tmp_path, monkeypatch):
    monkeypatch.setattr(opendata, "MAX_INTERRUPTIONS", 2)
    monkeypatch.setattr(opendata, "CHUNK_BYTES", 1024)
    data = root_files["signal_1.root"]
    portal.cuts["/files/signal_1.root"] = [2048, 99]  # every answer dies after 2 kB
    (remote,) = opendata.list_record_files(SIGNAL_RECID)
    folder = tmp_path / "cache" / "opendata" / str(SIGNAL_RECID)
    with pytest.raises(SourceUnavailableError, match="could not be reached") as error:
        opendata.download_file(remote, folder, progress=False)
    assert "3 times while downloading signal_1.root" in str(error.value)
    assert "6144 bytes received so far are kept" in str(error.value)
    assert [p.name for p in folder.iterdir()] == ["signal_1.root.partial"]  # never under the final name
    portal.cuts.clear()
    path = opendata.download_file(remote, folder, progress=False)
    assert path.read_bytes() == data
    assert portal.hits("signal_1.root") == [None, "bytes=2048-", "bytes=4096-", "bytes=6144-"]


def test_resume_from_partial_file_uses_range_request(portal, root_files, tmp_path):
    data = root_files["qcd_1.root"]
    folder = tmp_path / "cache" / "opendata" / str(QCD_RECID)
    folder.mkdir(parents=True)
    (folder / "qcd_1.root.partial").write_bytes(data[:5000])
    remote = opendata.list_record_files(QCD_RECID)[0]
    path = opendata.download_file(remote, folder, progress=False)
    assert portal.hits("qcd_1.root") == ["bytes=5000-"]
    assert path.read_bytes() == data
    assert sorted(p.name for p in folder.iterdir()) == ["qcd_1.root"]


def test_server_without_range_support_restarts_from_scratch(portal, root_files, tmp_path):
    portal.supports_range = False
    data = root_files["qcd_1.root"]
    folder = tmp_path / "cache" / "opendata" / str(QCD_RECID)
    folder.mkdir(parents=True)
    (folder / "qcd_1.root.partial").write_bytes(b"garbage" * 100)
    remote = opendata.list_record_files(QCD_RECID)[0]
    assert opendata.download_file(remote, folder, progress=False).read_bytes() == data
    assert portal.hits("qcd_1.root") == ["bytes=700-"]  # asked to resume, got the whole file


# ---------------------------------------------------------------- NanoAOD -> objects
def test_conversion_of_hand_written_event(root_files, tmp_path):
    path = tmp_path / "qcd_1.root"
    path.write_bytes(root_files["qcd_1.root"])
    assert opendata.count_events(path) == N_QCD_PER_FILE
    events = opendata.read_nanoaod(path, 0, 7)
    assert len(events) == 7  # only the events asked for are read
    objects, weight = opendata.nanoaod_to_arrays(events)
    assert objects.shape == (7, 19, 3)
    assert objects.dtype == np.float32
    np.testing.assert_array_equal(objects[0], HAND_TABLE)
    assert weight.dtype == np.float32
    assert weight[0] == np.float32(0.5)


def test_conversion_applies_id_and_kinematic_cuts_on_random_events(root_files, tmp_path):
    path = tmp_path / "qcd_2.root"
    path.write_bytes(root_files["qcd_2.root"])
    events = opendata.read_nanoaod(path)
    objects, _ = opendata.nanoaod_to_arrays(events)
    tight_jets = events.Jet_pt[(events.Jet_jetId >= 2) & (events.Jet_pt > 30) & (abs(events.Jet_eta) < 2.5)]
    n_jets = np.minimum(ak.to_numpy(ak.num(tight_jets)), 10)
    np.testing.assert_array_equal((objects[:, 9:, 0] > 0).sum(axis=1), n_jets)
    leading = ak.to_numpy(ak.fill_none(ak.max(tight_jets, axis=1), 0.0))
    np.testing.assert_array_equal(objects[:, 9, 0], leading.astype(np.float32))
    electrons = objects[:, 1:5]
    assert np.all((electrons[..., 0] == 0) | ((electrons[..., 0] > 10) & (abs(electrons[..., 1]) < 2.5)))
    assert np.all(np.diff(objects[:, 9:, 0], axis=1) <= 0)  # pT-ordered, padding last


# ---------------------------------------------------------------- data_fetch.load end to end
def _load(n_events: int, seed: int, **options) -> data_fetch.Dataset:
    """In this process (workers=1) unless told otherwise: a Dask cluster costs seconds to start."""
    return data_fetch.load(
        "cms_ad", source="opendata", n_events=n_events, seed=seed, progress=False, **{"workers": 1, **options}
    )


def test_load_end_to_end_then_from_cache(portal, capsys):
    n_events, seed = 250, 2  # seed 2 reads window 0: the first 200 QCD events and the first 50 signal ones
    data = _load(n_events, seed)
    assert data.source == "opendata"
    for name, schema in CMS_AD.schema.items():
        assert data[name].dtype == np.dtype(schema.dtype)
        assert data[name].shape == tuple(n_events if d == "n" else d for d in schema.shape)
    # 80% QCD (200: exactly the first file) and 20% signal, shuffled with default_rng(seed)
    order = np.random.default_rng(seed).permutation(n_events)
    np.testing.assert_array_equal(data["label"], np.repeat(np.int8([0, 1]), [200, 50])[order])
    np.testing.assert_array_equal(data["process"], np.where(data["label"] == 1, 3, 0))
    assert np.all(data["weight"][data["label"] == 1] == 1.0)
    matches = [i for i, row in enumerate(data["objects"]) if np.array_equal(row, HAND_TABLE)]
    assert matches == [int(np.flatnonzero(order == 0)[0])]  # the hand event, where the shuffle put it
    assert portal.hits("qcd_2.root") == []  # not needed for 200 QCD events
    assert [r["recid"] for r in data.metadata["records"]] == [QCD_RECID, SIGNAL_RECID]
    assert data.metadata["records"][0]["files"][0]["entries"] == [0, 200]
    assert (data.metadata["read"], data.metadata["window"], data.metadata["windows"]) == ("remote", 0, 2)
    assert not (Path(os.environ["MLHEP_DATA_DIR"]) / "opendata" / str(QCD_RECID) / "qcd_1.root").exists()

    n_requests = len(portal.requests)
    again = _load(n_events, seed)
    assert len(portal.requests) == n_requests  # served from the cache: no HTTP request
    for name in CMS_AD.schema:
        np.testing.assert_array_equal(again[name], data[name])


def test_remote_read_moves_only_the_branches_and_events_needed(portal, root_files):
    _load(50, 0)  # 40 QCD events of qcd_1, 10 signal events
    sent = portal.bytes_sent[f"{QCD_FOLDER}/qcd_1.root"]
    # The test files hold little else than the 16 branches read, so the saving here is the events
    # not read and the baskets skipped; on real NanoAOD (about 1 500 branches) it is far larger.
    assert sent < len(root_files["qcd_1.root"])
    assert all(rng not in (None, "bytes=0-") for rng in portal.hits("qcd_1.root"))  # never the whole file


def test_different_seeds_read_disjoint_events_whatever_their_sizes(portal):
    def event_ids(data):  # MET pT and the leading jet pT: random floats, unique per test event
        return set(zip(data["objects"][:, 0, 0].tolist(), data["objects"][:, 9, 0].tolist(), strict=True))

    training = _load(250, 0)  # window 0
    held_out = _load(100, 1)  # window 1: the second QCD file, signal events 50-70
    assert len(event_ids(training)) == 250 and len(event_ids(held_out)) == 100
    assert event_ids(training).isdisjoint(event_ids(held_out))
    assert held_out.metadata["records"][0]["files"][0]["file"] == "qcd_2.root"
    assert held_out.metadata["records"][1]["files"][0]["entries"] == [50, 70]
    same_window = _load(250, 2)  # 2 mod 2 = 0: the same events as seed 0, in another order
    assert event_ids(same_window) == event_ids(training)
    assert not np.array_equal(same_window["objects"], training["objects"])


def test_download_mode_keeps_checked_files_and_gives_the_same_arrays(portal, tmp_path, monkeypatch):
    remote = _load(250, 1)
    monkeypatch.setenv("MLHEP_OPENDATA_READ", "download")
    monkeypatch.setenv("MLHEP_DATA_DIR", str(tmp_path / "cache2"))  # not the arrays cached above
    downloaded = _load(250, 1)
    for name in CMS_AD.schema:
        np.testing.assert_array_equal(downloaded[name], remote[name])
    assert downloaded.metadata["read"] == "download"
    files = sorted(p.name for p in (tmp_path / "cache2" / "opendata").rglob("*") if p.is_file())
    # Window 1 starts after the first QCD file, which is only counted (from its header), not downloaded;
    # no .partial file is left.
    assert files == ["qcd_2.root", "signal_1.root"]


def test_unknown_read_mode_says_what_to_choose(portal, monkeypatch):
    monkeypatch.setenv("MLHEP_OPENDATA_READ", "xrootd")
    with pytest.raises(DataFetchError, match=r"unknown open-data read mode 'xrootd'.*remote, download"):
        _load(50, 0)


def test_transient_server_errors_are_tried_again(portal, capsys):
    portal.flaky[f"{QCD_FOLDER}/qcd_1.root"] = 2  # two HTTP 502 answers, then the file
    portal.flaky["/api/records/63168"] = 1
    data = _load(50, 0)
    assert len(data) == 50
    out = capsys.readouterr().out
    assert out.count("trying again") == 3
    assert "HTTP 502" in out


def test_server_that_keeps_failing_is_reported_as_unavailable(portal):
    portal.flaky[f"{QCD_FOLDER}/qcd_1.root"] = 100
    with pytest.raises(SourceUnavailableError, match=r"opening qcd_1.root failed 4 times \(HTTP 502\)"):
        _load(50, 0)


def test_missing_or_offline_files_are_skipped_for_the_next_one(portal, capsys):
    del portal.files[f"{QCD_FOLDER}/qcd_1.root"]  # answers 404 now
    data = _load(100, 0)  # window 0 of what remains: qcd_2 supplies the 80 QCD events
    records = data.metadata["records"]
    assert [f["file"] for f in records[0]["files"]] == ["qcd_2.root"]
    assert records[0]["skipped"] == ["qcd_1.root: HTTP 404, not found"]
    assert "skipping qcd_1.root: HTTP 404" in capsys.readouterr().out
    portal.records[SIGNAL_RECID]["metadata"]["files"][0]["availability"] = "on demand"
    with pytest.raises(DataFetchError, match=r"availability 'on demand', not 'online'"):
        _load(100, 1)  # the signal record has no other file: it cannot supply the events


def test_checksum_failing_twice_skips_the_file_in_download_mode(portal, monkeypatch):
    monkeypatch.setenv("MLHEP_OPENDATA_READ", "download")
    index = portal.records[QCD_RECID]["metadata"]["_file_indices"][0]["files"]
    index[0]["checksum"] = "00000001"  # a bare 8-hex checksum is adler32; this one is wrong
    data = _load(100, 0)
    assert data.metadata["records"][0]["skipped"] == ["qcd_1.root: checksum failed twice"]
    assert data.metadata["records"][0]["files"][0]["file"] == "qcd_2.root"


def test_asking_more_events_than_a_window_says_how_to_get_more(portal):
    with pytest.raises(DataFetchError, match=r"at most 250 events .* load several seeds"):
        _load(300, 0)


def test_a_record_smaller_than_a_window_fails_before_reading(portal, monkeypatch):
    monkeypatch.setattr(opendata, "EVENTS_PER_WINDOW", 10_000)  # 8 000 QCD events per window
    with pytest.raises(
        DataFetchError, match=r"holds 400 events, fewer than one seed's window takes from it \(8000"
    ):
        _load(1000, 0)
    assert portal.hits("qcd_1.root") == []  # the record's number_events said it all


def test_a_window_past_the_readable_events_says_why(portal):
    # The record states 600 events (3 windows of 200), its files hold 400: window 2 is not there.
    portal.records[QCD_RECID]["metadata"]["distribution"]["number_events"] = 600
    with pytest.raises(
        DataFetchError,
        match=r"has 400 readable events, but this seed's window needs its events 400 to 600: its files hold fewer",
    ):
        _load(250, 2)
    assert len(_load(250, 1)) == 250  # window 1 is readable


def test_download_mode_skips_a_missing_file(portal, monkeypatch):
    monkeypatch.setenv("MLHEP_OPENDATA_READ", "download")
    data = _load(100, 1)  # window 1 reads qcd_2: qcd_1 is only counted (its header), never downloaded
    assert "qcd_1.root" not in {p.name for p in (Path(os.environ["MLHEP_DATA_DIR"]) / "opendata").rglob("*")}
    assert data.metadata["records"][0]["files"][0]["file"] == "qcd_2.root"
    monkeypatch.setenv("MLHEP_DATA_DIR", str(Path(os.environ["MLHEP_DATA_DIR"]) / "again"))
    del portal.files[f"{QCD_FOLDER}/qcd_1.root"]  # now answers 404: skipped, qcd_2 supplies window 0
    data = _load(100, 0)
    assert data.metadata["records"][0]["skipped"] == ["qcd_1.root: HTTP 404, not found"]
    assert data.metadata["records"][0]["files"][0]["file"] == "qcd_2.root"


def test_cache_description_needs_no_network_and_names_what_matters(portal):
    description = opendata.cache_description(CMS_AD, 100, 1)
    assert portal.requests == []
    assert description["source"] == "opendata"
    assert description["server"] == portal.url
    assert [r[0] for r in description["records"]] == [QCD_RECID, SIGNAL_RECID]
    assert "Jet_jetId" in description["branches"]
    assert opendata.cache_description(CMS_AD, 100, 2) != description


# ---------------------------------------------------------------- source choice, offline
def test_auto_picks_opendata_when_the_portal_answers(portal):
    source, reason = dataset.resolve_source("auto")
    assert source == "opendata"
    assert portal.url in reason
    assert portal.requests == [(f"/api/records/{QCD_RECID}", None)]


def test_auto_picks_pythia_when_the_portal_is_unreachable(monkeypatch):
    monkeypatch.setenv("MLHEP_OPENDATA_SERVER", _closed_port_url())
    source, reason = dataset.resolve_source("auto")
    assert source == "pythia"
    assert "connection refused" in reason


def test_portal_answering_with_server_error_is_not_reachable(portal):
    portal.status = 503
    ok, reason = opendata.portal_reachable()
    assert not ok
    assert "503" in reason


def test_unreachable_portal_with_opendata_source_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("MLHEP_OPENDATA_SERVER", _closed_port_url())
    monkeypatch.setenv("MLHEP_DATA_DIR", str(tmp_path / "cache"))
    with pytest.raises(SourceUnavailableError) as error:
        data_fetch.load("cms_ad", source="opendata", n_events=10, progress=False)
    message = str(error.value)
    assert "could not be reached" in message
    assert 'source="pythia"' in message
    assert "connection refused" in message
    assert _cache_files(tmp_path) == []  # nothing half-written


def test_dask_reading_gives_the_same_arrays_as_reading_in_process(portal, tmp_path, monkeypatch):
    in_process = _load(250, 1)
    monkeypatch.setenv("MLHEP_DATA_DIR", str(tmp_path / "cache2"))  # produce again, not from the cache
    on_dask = _load(250, 1, workers=2)  # a LocalCluster of 2 processes; one task per file piece
    assert on_dask.metadata["engine"] == "dask"
    for name in CMS_AD.schema:
        assert on_dask[name].dtype == in_process[name].dtype
        np.testing.assert_array_equal(on_dask[name], in_process[name])


# ---------------------------------------------------------------- real NanoAOD, written by CMS software
#: coffea's source distribution ships small NanoAOD files made by CMS software (CMSSW) for its own
#: tests: the real format, with its ~1 500 branches, compression and basket layout.
COFFEA = "coffea==2026.9.0"
REAL_FILES = ("nano_tt_v12.root", "nano_dy.root")  # 200 and 40 events


@pytest.fixture(scope="module")
def real_nanoaod() -> dict:
    """name -> bytes of the real NanoAOD files, from coffea's sdist on PyPI (downloaded once, cached)."""
    import subprocess
    import sys
    import tarfile

    from data_fetch import cache

    folder = cache.cache_root() / "test-samples" / COFFEA.replace("==", "-")
    if not all((folder / name).exists() for name in REAL_FILES):
        download = folder.parent / "download"
        download.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:", "--no-deps"]
        done = subprocess.run([*command, "-d", str(download), COFFEA], capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            if any(
                word in done.stderr for word in ("NewConnectionError", "Max retries", "No matching distribution")
            ):
                reason = (
                    f"PyPI is unreachable, so coffea's NanoAOD test files cannot be fetched: {done.stderr[-150:]}"
                )
                pytest.skip(reason)
            raise AssertionError(f"pip download {COFFEA} failed: {done.stderr[-2000:]}")
        archive = next(download.glob("coffea-*.tar.gz"))
        folder.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                name = member.name.rsplit("/", 1)[-1]
                if member.name.endswith(f"tests/samples/{name}") and name in REAL_FILES:
                    (folder / f"{name}.partial").write_bytes(tar.extractfile(member).read())
                    (folder / f"{name}.partial").rename(folder / name)
        archive.unlink()
    return {name: (folder / name).read_bytes() for name in REAL_FILES}


def test_real_nanoaod_listing_remote_read_and_conversion(portal, real_nanoaod, tmp_path, monkeypatch):
    # The fake portal serves CMS's files: QCD record = nano_tt_v12 (200 events) + nano_dy (40),
    # signal record = nano_dy (40). Windows of 50 events: 40 QCD and 10 signal events.
    tt, dy = real_nanoaod["nano_tt_v12.root"], real_nanoaod["nano_dy.root"]
    portal.files = {f"{QCD_FOLDER}/qcd_1.root": tt, f"{QCD_FOLDER}/qcd_2.root": dy, "/files/signal_1.root": dy}
    portal.build_records()
    portal.records[QCD_RECID]["metadata"]["distribution"]["number_events"] = 240
    monkeypatch.setattr(opendata, "EVENTS_PER_WINDOW", 50)
    n_events, seed = 50, 1  # 240 // 40 = 6 and 40 // 10 = 4 windows: seed 1 reads window 1
    data = _load(n_events, seed)
    records = data.metadata["records"]
    assert records[0]["files"] == [
        {"file": "qcd_1.root", "url": f"{portal.url}{QCD_FOLDER}/qcd_1.root", "entries": [40, 80], "events": 40}
    ]
    assert records[1]["files"][0]["entries"] == [10, 20]
    # Measured: 394 KB of the 981 KB file, of which 367 KB are the description of its 654 branches (read
    # once) and 26 KB the baskets of the 16 branches read, for 40 events. In a full-size file (1-2 GB)
    # the description is a fraction of a percent, and the baskets of unread branches the rest.
    assert portal.bytes_sent[f"{QCD_FOLDER}/qcd_1.root"] < 0.45 * len(tt)

    # The same events read by uproot from the files on disk, and the object table built here by hand.
    paths = {}
    for name, data_bytes in real_nanoaod.items():
        paths[name] = tmp_path / name
        paths[name].write_bytes(data_bytes)
    parts = [
        uproot.open(paths["nano_tt_v12.root"])["Events"].arrays(entry_start=40, entry_stop=80),
        uproot.open(paths["nano_dy.root"])["Events"].arrays(entry_start=10, entry_stop=20),
    ]
    events = ak.concatenate([part[list(opendata.BRANCHES)] for part in parts])
    order = np.random.default_rng(seed).permutation(n_events)
    unshuffled = {name: np.empty_like(values) for name, values in data.arrays.items()}
    for name, values in data.arrays.items():
        unshuffled[name][order] = values
    objects = unshuffled["objects"]
    np.testing.assert_array_equal(objects[:, 0, 0], ak.to_numpy(events.MET_pt).astype(np.float32))
    np.testing.assert_array_equal(objects[:, 0, 2], ak.to_numpy(events.MET_phi).astype(np.float32))
    np.testing.assert_array_equal(unshuffled["weight"], ak.to_numpy(events.genWeight).astype(np.float32))
    np.testing.assert_array_equal(unshuffled["label"], np.repeat(np.int8([0, 1]), [40, 10]))
    good_jet = (events.Jet_jetId >= 2) & (events.Jet_pt > 30) & (abs(events.Jet_eta) < 2.5)
    leading_jet = ak.to_numpy(ak.fill_none(ak.max(events.Jet_pt[good_jet], axis=1), 0.0)).astype(np.float32)
    np.testing.assert_array_equal(objects[:, 9, 0], leading_jet)
    np.testing.assert_array_equal(
        (objects[:, 9:, 0] > 0).sum(axis=1), np.minimum(ak.to_numpy(ak.sum(good_jet, axis=1)), 10)
    )
    good_muon = (
        events.Muon_looseId
        & (events.Muon_pfRelIso04_all < 0.25)
        & (events.Muon_pt > 10)
        & (abs(events.Muon_eta) < 2.4)
    )
    np.testing.assert_array_equal(
        (objects[:, 5:9, 0] > 0).sum(axis=1), np.minimum(ak.to_numpy(ak.sum(good_muon, axis=1)), 4)
    )
    assert leading_jet.max() > 30 and (objects[:, 5:9, 0] > 0).any()  # real events: jets and muons were found


def test_check_portal_says_what_worked_and_what_failed(portal):
    lines = []
    assert opendata.check_portal(n_events=20, echo=lines.append)
    assert any(line.startswith("ok     record 63168: read 20 of 200 events of qcd_1.root") for line in lines)
    assert any(line.startswith("ok     record 33703: 1 ROOT files listed (1 online") for line in lines)
    assert any(line.startswith("skipped: a record of cms_ad does not state its number") for line in lines)
    # With stated sizes: 2 windows of 250 events here, and the course's seeds 0 and 2024 both read window 0.
    portal.records[SIGNAL_RECID]["metadata"]["distribution"] = {"number_events": 150}
    lines.clear()
    assert not opendata.check_portal(n_events=20, echo=lines.append)
    assert (
        "FAILED cms_ad: 2 windows; the course's seeds share events (seed 0 -> window 0, seed 2024 -> window 0)"
        in lines
    )
    portal.records[QCD_RECID]["metadata"]["distribution"]["number_events"] = 600  # 3 windows
    lines.clear()
    assert opendata.check_portal(n_events=20, echo=lines.append)
    assert any(line.endswith("disjoint events (seed 0 -> window 0, seed 2024 -> window 2)") for line in lines)
    del portal.records[SIGNAL_RECID]["metadata"]["distribution"]
    del portal.files["/files/signal_1.root"]
    lines.clear()
    assert not opendata.check_portal(n_events=20, echo=lines.append)
    assert any(line.startswith("FAILED record 33703: reading") and "404" in line for line in lines)
    portal.status = 503
    lines.clear()
    assert not opendata.check_portal(n_events=20, echo=lines.append)
    assert sum(line.startswith("FAILED") for line in lines) == 2
    assert lines[-1].endswith('use source="pythia"')


def test_check_portal_command_exits_nonzero_when_something_failed(portal, capsys):
    from data_fetch.__main__ import main

    assert main(["check-portal", "--n-events", "10"]) == 0
    assert "everything the open-data source needs works" in capsys.readouterr().out
    portal.status = 502
    assert main(["check-portal"]) == 1
    assert "FAILED record 63168" in capsys.readouterr().out


def test_a_sample_too_small_to_take_from_every_record(portal):
    data = _load(2, 0)  # round(0.2 * 2) = 0 signal events: the signal record gives none
    np.testing.assert_array_equal(data["label"], [0, 0])
    assert [r["recid"] for r in data.metadata["records"]] == [QCD_RECID]
