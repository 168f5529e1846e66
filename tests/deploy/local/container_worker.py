"""A worker that does what real images do inside their own container: it writes a fixed
file in its working directory and in its temporary directory and, with ``FIXED_PORT``,
binds a fixed port (vLLM 8000, ComfyUI 8188); then it runs the conformance worker."""

import os
import pathlib
import runpy
import socket
import tempfile

# Exclusive creation: a second worker sharing the directory fails here, as it would
# fail to create its model cache lock or its scratch file.
pathlib.Path("model.lock").open("x").write(str(os.getpid()))
(pathlib.Path(tempfile.gettempdir()) / "scratch.bin").open("x").write("x")
if os.environ.get("FIXED_PORT"):
    server = socket.socket()
    server.bind(("127.0.0.1", int(os.environ["FIXED_PORT"])))
    server.listen()
runpy.run_path(
    str(pathlib.Path(__file__).with_name("conformance") / "worker.py"), run_name="__main__"
)
