"""`relaychain deploy`: render the Kubernetes manifests and check them against the topology."""

from __future__ import annotations

from pathlib import Path
from typing import IO

import click

from relaychain.deploy import (
    DEFAULT_K8S_DIR,
    RenderError,
    check,
    load_documents,
    render,
)

__all__ = ["deploy"]


@click.group()
def deploy() -> None:
    """Kubernetes manifests (deploy/k8s)."""


@deploy.command("render")
@click.option(
    "--overlay",
    default="prod",
    show_default=True,
    help="Overlay name under deploy/k8s/overlays, or a kustomization directory.",
)
@click.option(
    "--k8s-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_K8S_DIR,
    show_default="deploy/k8s of this checkout",
    help="Directory holding base/ and overlays/.",
)
@click.option(
    "--check", "run_check", is_flag=True, help="Also check the manifests against the topology; exit 1 on a problem."
)
@click.option("-o", "--output", type=click.File("w"), default="-", help="Write the YAML here instead of stdout.")
def render_command(overlay: str, k8s_dir: Path, run_check: bool, output: IO[str]) -> None:
    """Build an overlay with kustomize and print the manifests (pipe to `kubectl apply -f -`)."""
    try:
        rendered = render(overlay, k8s_dir)
    except RenderError as exc:
        raise click.ClickException(str(exc)) from exc
    output.write(rendered)
    if run_check:
        problems = check(load_documents(rendered))
        for problem in problems:
            click.echo(f"problem: {problem}", err=True)
        if problems:
            raise SystemExit(1)
        click.echo(f"{overlay}: manifests agree with the topology", err=True)
