"""``python -m deploy local``: placeholder until the local endpoint lands."""


def register(sub) -> None:
    sub.add_parser("local", help="run the local endpoint (not built yet)")
