"""`hyperfollow operator` and `hyperfollow shards plan`: the Kubernetes side."""

from __future__ import annotations

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    shards = typer.Typer(help="TrackingShard resources.", no_args_is_help=True)
    app.add_typer(shards, name="shards")

    @app.command("operator")
    def operator_(
        namespace: list[str] = typer.Option([], "--namespace", "-n",
                                            help="namespace to serve (repeatable); default: the current one"),
        all_namespaces: bool = typer.Option(False, "--all-namespaces", "-A", help="serve every namespace"),
        liveness: str = typer.Option("", help="health endpoint, e.g. http://0.0.0.0:8080/healthz"),
    ) -> None:
        """Run the kopf operator: TrackingShards -> worker Deployments, with status and cleanup."""
        import os

        from hyperfollow.core.runtime import bootstrap
        from hyperfollow.operator.settings import OperatorSettings

        bootstrap("operator", OperatorSettings, need_servers=False)  # settings errors and logging first
        import kopf

        import hyperfollow.operator.handlers  # noqa: F401  (registers the handlers)

        if not namespace and not all_namespaces:
            namespace = [os.environ.get("POD_NAMESPACE") or _current_namespace()]
        kopf.run(standalone=True, clusterwide=all_namespaces, namespaces=namespace,
                 liveness_endpoint=liveness or None)

    @shards.command("plan")
    def plan(
        count: int = typer.Option(..., "--count", "-c", help="number of shards tiling the 16384 slots"),
        workers: int = typer.Option(1, "--workers", "-w", help="worker pods per shard"),
        prefix: str = typer.Option("shard", help="name prefix: PREFIX-00, PREFIX-01, ..."),
        namespace: str = typer.Option("", "--namespace", "-n", help="namespace to write into the manifests"),
        batch_size: int | None = typer.Option(None, "--batch-size", help="traders per tracking job"),
        budget_group: str | None = typer.Option(None, "--budget-group", help="weight budget group of the shards"),
    ) -> None:
        """Print TrackingShard YAML tiling the 16384 slots (pipe it into `kubectl apply -f -`)."""
        import sys

        from hyperfollow.operator.plan import plan_shards, render_yaml

        try:
            manifests = plan_shards(count, workers=workers, prefix=prefix, namespace=namespace or None,
                                    batch_size=batch_size, budget_group=budget_group)
        except ValueError as exc:
            typer.echo(f"hyperfollow shards plan: {exc}", err=True)
            sys.exit(2)  # a usage error
        typer.echo(render_yaml(manifests), nl=False)


def _current_namespace() -> str:
    """The pod's namespace in a cluster, else the kubeconfig context's, else `default`."""
    from pathlib import Path

    in_cluster = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    if in_cluster.exists():
        return in_cluster.read_text().strip()
    try:
        from kubernetes import config

        _, context = config.list_kube_config_contexts()
        return str(context["context"].get("namespace") or "default")
    except Exception:
        return "default"
