"""Real IIIF parts on loopback for the IIIF tests: the reference Image API server (``iiif``
on PyPI), a level-0 static tile set made by its ``iiif_static``, manifests and collections
(Presentation 3 made with ``iiif-prezi3``; 2.1 written out as the 2.1 spec shows, since no
maintained library writes 2.1), and a plain HTTP server that also plays every fault.
"""

from __future__ import annotations

import http.server
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
BUNDLE = Path(__file__).resolve().parents[1] / "artylyze" / "assets" / "bundle"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _script(name: str) -> str:
    """The ``iiif`` package's script ``name``, where its distribution installed it (a venv
    that sees the system's packages has none of its own, and PATH may hold a pyenv shim)."""
    from importlib import metadata

    try:
        files = metadata.distribution("iiif").files or []
    except metadata.PackageNotFoundError:
        files = []
    for f in files:
        if f.name == name and Path(f.locate()).is_file():
            return str(f.locate())
    here = Path(sys.executable).parent / name
    found = str(here) if here.is_file() else shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} not found: pip install iiif")
    return found


def wait_for(port: int, seconds: float = 30) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


class ReferenceServer:
    """``iiif_testserver.py`` (Flask + Pillow, Image API 2.1 and 3.0 at level 2) over a
    folder of images; ``base(version)`` is its service prefix for that API version."""

    def __init__(self, image_dir: Path, workdir: Path) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, _script("iiif_testserver.py"), "--host", "127.0.0.1", "--port",
             str(self.port), "--image-dir", str(image_dir), "--pages-dir", str(workdir),
             "--api-versions", "2.1,3.0", "--quiet"],
            cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self.port)

    def base(self, version: str) -> str:
        return f"http://127.0.0.1:{self.port}/{version}_pil"

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def make_static(images: list[Path], dest: Path, prefix: str) -> None:
    """A level-0 Image API 2.1 tile set of ``images`` under ``dest`` (``iiif_static``)."""
    subprocess.run([sys.executable, _script("iiif_static.py"), "-d", str(dest), "-p", prefix,
                    "-t", "512", *map(str, images)], check=True, capture_output=True)


class Faults:
    """What the fault routes of :class:`PlainServer` do; counts every request by path."""

    def __init__(self, image: bytes, big: bytes) -> None:
        self.image, self.big = image, big
        self.level2 = ""  # the reference server's URL, for /l2/ (see _level2)
        self.agents: set[str] = set()
        self.inflight = self.most_inflight = 0
        self.hits: Counter[str] = Counter()
        self.lock = threading.Lock()

    def hit(self, path: str) -> int:
        with self.lock:
            self.hits[path] += 1
            return self.hits[path]


def _handler(root: Path, faults: Faults):
    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args) -> None:
            pass

        def _send(self, status: int, body: bytes = b"", ctype: str = "image/jpeg",
                  headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def _level2(self, path: str) -> None:
            """The reference server's info.json with the level its image responses state
            in their Link header (2): its info.json says 1, a default of the library."""
            import urllib.request

            upstream = faults.level2 + path.removeprefix("/l2")
            with urllib.request.urlopen(upstream, timeout=10) as r:  # loopback only
                info = json.loads(r.read())
            if "profile" in info and isinstance(info["profile"], list):
                info["profile"][0] = "http://iiif.io/api/image/2/level2.json"
            else:
                info["profile"] = "level2"
            self._send(200, json.dumps(info).encode(), "application/json")

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            path = urlsplit(self.path).path
            n = faults.hit(path)
            faults.agents.add(self.headers.get("User-Agent", ""))
            if path.startswith("/l2/") and path.endswith("/info.json") and faults.level2:
                return self._level2(path)
            if not path.startswith("/fault/"):
                return super().do_GET()
            name = path.removeprefix("/fault/")
            if name == "missing.jpg":
                self._send(404, b"not here", "text/plain")
            elif name == "flaky.jpg":  # 500, then the image
                self._send(500, b"oops", "text/plain") if n == 1 else self._send(200, faults.image)
            elif name == "busy.jpg":  # 429 asking for 1 s, then the image
                if n == 1:
                    self._send(429, b"slow down", "text/plain", {"Retry-After": "1"})
                else:
                    self._send(200, faults.image)
            elif name == "slow.jpg":  # slower than the client's timeout
                time.sleep(3)
                self._send(200, faults.image)
            elif name in ("loop-a.jpg", "loop-b.jpg"):
                other = "loop-b.jpg" if name == "loop-a.jpg" else "loop-a.jpg"
                self._send(302, b"", "text/plain", {"Location": f"/fault/{other}"})
            elif name == "passwd.jpg":
                self._send(302, b"", "text/plain", {"Location": "file:///etc/passwd"})
            elif name == "big.jpg":
                self._send(200, faults.big)
            elif name == "page.jpg":
                self._send(200, b"<html><body>a page</body></html>", "text/html")
            elif name == "down.jpg":  # 503 for ever
                self._send(503, b"down", "text/plain")
            elif name == "later.jpg":  # come back in an hour
                self._send(429, b"later", "text/plain", {"Retry-After": "3600"})
            elif name.startswith("chain-"):  # chain-N redirects N times, then the image
                left = int(name.removeprefix("chain-").removesuffix(".jpg"))
                if left:
                    self._send(302, b"", "text/plain", {"Location": f"chain-{left - 1}.jpg"})
                else:
                    self._send(200, faults.image)
            elif name.startswith("count-"):  # counts requests in flight at once
                with faults.lock:
                    faults.inflight += 1
                    faults.most_inflight = max(faults.most_inflight, faults.inflight)
                time.sleep(0.2)
                with faults.lock:
                    faults.inflight -= 1
                self._send(200, faults.image)
            elif name == "notjson.json":
                self._send(200, b"<html>this is no manifest</html>", "application/json")
            else:
                self._send(404, b"", "text/plain")

    return Handler


class PlainServer:
    """A threaded ``http.server`` serving ``root`` (documents, the static tile set) and the
    fault routes under ``/fault/``."""

    def __init__(self, root: Path, faults: Faults) -> None:
        self.faults = faults
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(root, faults))
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# --- documents ------------------------------------------------------------------------------


def manifest_v3(mid: str, label: str, canvases: list[dict]) -> dict:
    """A Presentation 3 manifest made with iiif-prezi3. Each canvas: id, label, width,
    height, and ``service`` (id, ``ImageService3``/``ImageService2``, profile) or ``image``
    (a plain image URL)."""
    from iiif_prezi3 import Manifest, ServiceV2, ServiceV3

    m = Manifest(id=mid, label={"en": [label]})
    for i, c in enumerate(canvases):
        canvas = m.make_canvas(id=c["id"], label={"en": [c["label"]]}, width=c["width"],
                               height=c["height"])
        url = c.get("image") or f"{c['service']}/full/max/0/default.jpg"
        page = canvas.add_image(image_url=url, anno_page_id=f"{c['id']}/page",
                                anno_id=f"{c['id']}/image", format="image/jpeg",
                                width=c["width"], height=c["height"])
        if "service" in c:
            kind = c.get("service_type", "ImageService3")
            svc = (ServiceV3(id=c["service"], type=kind, profile=c.get("profile", "level2"))
                   if kind == "ImageService3" else
                   ServiceV2(id=c["service"], type=kind, profile=c.get("profile", "level2")))
            page.items[0].body.service = [svc]
        del i
    return json.loads(m.json())


def manifest_v21(mid: str, label: str, canvases: list[dict]) -> dict:
    """A Presentation 2.1 manifest, laid out as the 2.1 spec's examples."""
    items = []
    for c in canvases:
        resource = {"@id": c.get("image") or f"{c['service']}/full/full/0/default.jpg",
                    "@type": "dctypes:Image", "format": "image/jpeg",
                    "width": c["width"], "height": c["height"]}
        if "service" in c:
            resource["service"] = {"@context": "http://iiif.io/api/image/2/context.json",
                                   "@id": c["service"],
                                   "profile": c.get("profile",
                                                    "http://iiif.io/api/image/2/level2.json")}
        items.append({"@id": c["id"], "@type": "sc:Canvas", "label": c["label"],
                      "width": c["width"], "height": c["height"],
                      "images": [{"@id": f"{c['id']}/image", "@type": "oa:Annotation",
                                  "motivation": "sc:painting", "resource": resource,
                                  "on": c["id"]}]})
    return {"@context": "http://iiif.io/api/presentation/2/context.json", "@id": mid,
            "@type": "sc:Manifest", "label": label,
            "sequences": [{"@type": "sc:Sequence", "canvases": items}]}


def collection_v3(cid: str, label: str, members: list[tuple[str, str, str]]) -> dict:
    """A Presentation 3 collection (iiif-prezi3) of (id, type, label) members."""
    from iiif_prezi3 import Collection, CollectionRef, ManifestRef

    refs = [(ManifestRef if kind == "Manifest" else CollectionRef)(
        id=mid, type=kind, label={"en": [lab]}) for mid, kind, lab in members]
    return json.loads(Collection(id=cid, label={"en": [label]}, items=refs).json())


def collection_v21(cid: str, label: str, manifests: list[str]) -> dict:
    return {"@context": "http://iiif.io/api/presentation/2/context.json", "@id": cid,
            "@type": "sc:Collection", "label": label,
            "manifests": [{"@id": m, "@type": "sc:Manifest", "label": m} for m in manifests]}


def write_huge_manifest(path: Path, n: int, image_base: str) -> None:
    """A Presentation 3 manifest of ``n`` canvases, written piece by piece."""
    with path.open("w") as f:
        f.write('{"@context": "http://iiif.io/api/presentation/3/context.json", '
                f'"id": "{image_base}/huge.json", "type": "Manifest", '
                '"label": {"en": ["huge"]}, "items": [')
        for i in range(n):
            cid = f"{image_base}/huge/canvas/{i}"
            f.write(("," if i else "") + json.dumps({  # the least a canvas needs
                "id": cid, "type": "Canvas", "label": {"en": [f"p. {i}"]}, "items": [{
                    "type": "AnnotationPage", "items": [{
                        "type": "Annotation", "motivation": "painting",
                        "body": {"id": f"{image_base}/img/{i}.jpg", "type": "Image"}}]}]}))
        f.write("]}")


def small_site(tmp: Path):
    """The example paintings as plain images on a :class:`PlainServer`, a Presentation 3
    manifest (``m3.json``) and a 2.1 one (``m21.json``) of them; returns (server, names)."""
    root = tmp / "www"
    root.mkdir()
    names = sorted(p.stem for p in EXAMPLES.glob("*.jpg"))
    for n in names:
        shutil.copyfile(EXAMPLES / f"{n}.jpg", root / f"{n}.jpg")
    server = PlainServer(root, Faults(b"", b""))
    u = server.url
    for name, make, prefix in (("m3.json", manifest_v3, "c3"), ("m21.json", manifest_v21, "c2")):
        canvases = [{"id": f"{u}/{prefix}/{n}", "label": n.replace("_", " "), "width": 224,
                     "height": 224, "image": f"{u}/{n}.jpg"} for n in names]
        (root / name).write_text(json.dumps(make(f"{u}/{name}", "Example paintings",
                                                 canvases)))
    return server, names
