"""Placeholder for ``virtsdk lab``."""

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("lab", help="libvirt lab (in progress)")
