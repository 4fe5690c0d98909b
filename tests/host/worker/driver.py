"""Index an app with Microsoft's Python 3.13 worker library and print what the host would receive (JSON).

Run by tests/host/test_worker_parity.py with .venv-worker's Python: `driver.py APP_DIR SCRIPT_FILE`.
It plays the platform's proxy worker: compiles host_worker.proto, then sends azure-functions-runtime the
start-up requests in the host's order, each wrapped as the proxy wraps it (a request with `.name`,
`.request` = the StreamingMessage, `.properties` = {"protos", "host"} at init):

  WorkerInitRequest (the runtime indexes the app) -> FunctionsMetadataRequest -> FunctionLoadRequest each.

Output: {"init": {"status", "error"}, "functions": [metadata...], "loads": {name: status}}, where each
metadata entry is RpcFunctionMetadata as JSON (MessageToDict, proto field names) with raw_bindings parsed.
Nothing here imports the project: the worker sees the app exactly as Azure's would.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


@dataclass
class WorkerRequest:
    """The proxy worker's wrapper around a StreamingMessage."""

    name: str
    request: Any
    properties: dict[str, Any] = field(default_factory=dict)


def compile_protos(out_dir: str) -> Any:
    import grpc_tools
    from grpc_tools import protoc

    include = str(Path(grpc_tools.__file__).parent / "_proto")
    code = protoc.main(
        ["protoc", f"-I{HERE}", f"-I{include}", f"--python_out={out_dir}", str(HERE / "host_worker.proto")]
    )
    if code != 0:
        raise SystemExit(f"protoc failed on host_worker.proto ({code})")
    sys.path.insert(0, out_dir)
    return importlib.import_module("host_worker_pb2")


def status_of(protos: Any, result: Any) -> dict[str, Any]:
    return {
        "status": protos.StatusResult.Status.Name(result.status),
        "error": result.exception.message or None,
    }


async def drive(app_dir: Path, protos: Any) -> dict[str, Any]:
    import azure_functions_runtime as runtime
    from google.protobuf.json_format import MessageToDict

    init = protos.StreamingMessage(
        request_id="init",
        worker_init_request=protos.WorkerInitRequest(
            host_version="4.1044.0", function_app_directory=str(app_dir), worker_directory=str(app_dir)
        ),
    )
    response = await runtime.worker_init_request(
        WorkerRequest("WorkerInitRequest", init, {"protos": protos, "host": "127.0.0.1"})
    )
    report: dict[str, Any] = {"init": status_of(protos, response.result), "functions": [], "loads": {}}
    if response.result.status != protos.StatusResult.Success:
        return report
    metadata_message = protos.StreamingMessage(
        request_id="metadata",
        functions_metadata_request=protos.FunctionsMetadataRequest(function_app_directory=str(app_dir)),
    )
    metadata = await runtime.functions_metadata_request(
        WorkerRequest("WorkerMetadataRequest", metadata_message)
    )
    report["metadata"] = status_of(protos, metadata.result)
    for entry in metadata.function_metadata_results:
        described = MessageToDict(entry, preserving_proto_field_name=True)
        described["raw_bindings"] = [json.loads(raw) for raw in entry.raw_bindings]
        described["has_retry_options"] = entry.HasField("retry_options")
        report["functions"].append(described)
        load = protos.StreamingMessage(
            request_id=f"load-{entry.name}",
            function_load_request=protos.FunctionLoadRequest(function_id=entry.function_id, metadata=entry),
        )
        loaded = await runtime.function_load_request(WorkerRequest("FunctionLoadRequest ", load))
        report["loads"][entry.name] = status_of(protos, loaded.result)
    return report


def main() -> None:
    app_dir = Path(sys.argv[1]).resolve()
    os.environ["PYTHON_SCRIPT_FILE_NAME"] = sys.argv[2]
    os.chdir(app_dir)  # the worker runs in the app's directory, with it first on sys.path
    sys.path.insert(0, str(app_dir))
    with tempfile.TemporaryDirectory(prefix="host-worker-protos-") as out_dir:
        protos = compile_protos(out_dir)
        report = asyncio.run(drive(app_dir, protos))
    report["python"] = f"{sys.version_info.major}.{sys.version_info.minor}"
    from importlib.metadata import version

    report["versions"] = {name: version(name) for name in ("azure-functions-runtime", "azure-functions")}
    sys.stdout.write("\n" + json.dumps(report) + "\n")


if __name__ == "__main__":
    main()
