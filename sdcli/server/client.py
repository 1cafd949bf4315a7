"""The CLI's `--server URL` client: send the exact request to `sdcli serve`, write the images here.

Standard library + Pillow only (no torch): a shell loop of `sdcli txt2img --server ...`
pays the interpreter start-up, not the model's. Everything checkable is checked here
first, with the CLI's own messages; files are written by job.write.write_image exactly
as a local run writes them (same names, infotext and replay record).
"""

from __future__ import annotations

import base64
import io
import json
import urllib.error
import urllib.parse
import urllib.request
from contextlib import suppress
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from sdcli.errors import RuntimeFailure, SdcliError, UsageError

TIMEOUT_S = 3600  # one request may queue behind others and run many steps


def post_json(url: str, path: str, body: dict[str, Any], timeout: float = TIMEOUT_S) -> dict[str, Any]:
    """POST `body` to url+path (HTTP Basic from user:pass@ in the URL); the JSON answer or a one-line error."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--server: {url!r} is not an http(s) URL (e.g. http://127.0.0.1:7860)")
    netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
    target = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + path, "", ""))
    headers = {"Content-Type": "application/json"}
    if parts.username is not None:
        token = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(token.encode()).decode()
    data = json.dumps(body).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(target, data, headers), timeout=timeout) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        detail = _detail(exc.read())
        if exc.code == 422:
            raise UsageError(detail) from None
        raise RuntimeFailure(f"--server: {netloc} answered {exc.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RuntimeFailure(f"--server: cannot reach {netloc} ({reason}); is `sdcli serve` running?") from None


def _detail(raw: bytes) -> str:
    try:
        body = json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")[:200]
    detail = body.get("detail", body) if isinstance(body, dict) else body
    return detail if isinstance(detail, str) else json.dumps(detail)[:300]


def _read(path: str | None, flag: str) -> str | None:
    if path is None:
        return None
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"{flag}: {path}: no such file" if not file.exists() else f"{flag}: {path} is not a file")
    return base64.b64encode(file.read_bytes()).decode("ascii")


def _served_name(spec: str | None) -> str | None:
    """-m / --refiner as sent: an existing local path made absolute (the server serves it by that path)."""
    if spec and Path(spec).expanduser().exists():
        return str(Path(spec).expanduser().resolve())
    return spec


def _names(request: Any, assets: Any) -> dict[str, Any]:
    """The add-on flags as names for the server's models folder; flags that cannot go there are refused."""
    from sdcli.models.assets import AssetOptions
    from sdcli.models.lora import parse_lora_flag
    from sdcli.models.upscalers import builtin_names

    assets = assets or AssetOptions()
    for flag, given in (("--models-dir (or SDCLI_MODELS_DIR)", assets.models_dir), ("--webui-dir", assets.webui_dir),
                        ("--allow-pickle", assets.allow_pickle), ("--no-half-vae", assets.no_half_vae)):
        if given:
            raise UsageError(f"{flag}: not sent to a server, which uses its own models folder and settings "
                             "(sdcli serve --models-dir); leave it out with --server")
    if request.controlnets:
        raise UsageError("--server: --controlnet units are not sent to a server; run without --server")
    files = [("--lora", parse_lora_flag(spec)[0]) for spec in assets.loras]
    files += [("--embedding", spec) for spec in assets.embeddings] + [("--vae", assets.vae or "")]
    files += [("--text-encoder", spec) for spec in request.text_encoders]
    if request.hires is not None and request.hires.upscaler.strip().lower() not in {n.lower() for n in
                                                                                   builtin_names()}:
        files.append(("--hires-upscaler", request.hires.upscaler))
    for flag, spec in files:
        if spec and Path(spec).expanduser().exists():
            raise UsageError(f"{flag}: {spec} is a file here; a server takes only names in its own models folder "
                             "(sdcli serve --models-dir): put the file there and give its name")
    return {"loras": list(assets.loras), "embeddings": list(assets.embeddings), "vae": assets.vae}


def run_remote_job(server: str, request: Any, runtime: Any, model_spec: str | None, output: Any,
                   reporter: Any, assets: Any = None) -> list[dict[str, Any]]:
    """run_job's twin for --server: same checks, same files and records; the server generates.

    Names (-m, --refiner, --hires-upscaler, --lora, --embedding, --vae, --text-encoder, <lora:...> tags) go to
    the server,
    which looks them up in its own models; a flag that cannot go there is refused, never dropped.
    """
    from PIL import Image

    from sdcli.io.output import next_number, prepare_folder
    from sdcli.job.generate import GeneratedImage
    from sdcli.job.plan import DEMO_NOTE, check_request
    from sdcli.job.write import write_image
    from sdcli.models.resolve import ModelRef
    from sdcli.models.runtime import RuntimeOptions
    from sdcli.request.generation import DEFAULTED, with_defaults

    # 1. The plan step's own checks, here; names are planned by the server (job.plan with its Names).
    check_request(request, runtime, reporter.note, output)
    names = _names(request, assets)
    flag_defaults = RuntimeOptions(cpu_offload="auto")  # the runtime flags' defaults (cli.options)
    ignored = [f"--{name.replace('_', '-')}" for name, value in vars(replace(runtime, offline=False)).items()
               if value != getattr(flag_defaults, name)]
    if ignored:
        reporter.note(f"--server: {', '.join(ignored)}: the server's own device, precision and memory settings "
                      "apply; ignored here")
    init = _read(request.init.image, "--image") if request.init else None
    mask = _read(request.inpaint.mask, "--mask") if request.inpaint else None
    # An edit's reference images, under their file names (the server's infotext names them as a local run does).
    references = [{"name": Path(p).name, "image": _read(p, "--image")} for p in request.references]
    existed = output.folder.exists()
    folder = prepare_folder(output.folder)
    sent = replace(request, refiner=_served_name(request.refiner))

    # 2. The server generates.
    # (steps left out: the model family's, which the server knows; the bar counts sdcli's default until it answers)
    reporter.start(request.total_images, with_defaults(request).steps_run)
    try:
        answer = post_json(server, "/sdcli/v1/generate", {"request": asdict(sent), "model": _served_name(model_spec),
                                                          "init_image": init, "mask": mask, **names,
                                                          **({"references": references} if references else {})})
    except SdcliError:  # refused or failed there: leave no empty output folder behind
        if not existed:
            with suppress(OSError):
                folder.rmdir()
        raise

    # 3. Files written here, as a local run writes them (names as the server resolved them).
    if not {"refiner", "hires_upscaler", "assets"} <= answer.keys():
        raise RuntimeFailure("--server: the server runs an older sdcli that does not report the models it used; "
                             "update it")
    request = replace(request, seed=answer["seed"], subseed=answer["subseed"], refiner=answer["refiner"],
                      **{k: v for k, v in (answer.get("defaults") or {}).items() if k in DEFAULTED})
    request = with_defaults(request)  # a server from before family defaults: sdcli's own
    if request.hires is not None:
        request = replace(request, hires=replace(request.hires, upscaler=answer["hires_upscaler"]))
    info = answer["model"]
    model = ModelRef(Path("."), info["name"], is_demo=info["is_demo"], source=info["source"])
    if model.is_demo:
        reporter.note(DEMO_NOTE)
    plan = _Plan(answer["device"], answer["dtype"])
    number = next_number(folder)
    records = []
    for raw in answer["items"]:
        image = Image.open(io.BytesIO(base64.b64decode(raw["png"])))
        image.load()
        item = GeneratedImage(image=image, index=raw["index"], seed=raw["seed"], subseed=raw["subseed"],
                              width=raw["width"], height=raw["height"], params=raw["params"],
                              infotext=raw["infotext"])
        record = write_image(item, folder, output.pattern, number + item.index, request, model, plan,
                             fmt=output.format, quality=output.quality, assets=answer["assets"])
        records.append(record)
        reporter.image(record)
    return records


class _Plan:
    """The server's device and dtype, for the JSON records."""

    def __init__(self, device: str, dtype: str):
        self.device, self.dtype = device, dtype
