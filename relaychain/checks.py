"""Start-up checks beyond field types: templates, schemas, word lists, and that every slip step has a handler."""

from __future__ import annotations

from typing import TYPE_CHECKING

from jinja2 import TemplateNotFound, TemplateSyntaxError

from relaychain import topology
from relaychain.agents.prompts import BUILTIN_VARIABLES, DEFAULT_TEMPLATE, PromptLibrary

if TYPE_CHECKING:
    from relaychain.settings import Settings


def check_app_config(settings: Settings) -> list[str]:
    """Every (business, allowed model) pair resolves to a template whose variables are declared."""
    app = settings.app
    prompts = PromptLibrary(app, settings.config_dir)
    problems: list[str] = []
    for name, business in app.businesses.items():
        where = f"businesses.{name}"
        problems += _unhandled_steps(settings, name, business.steps)
        declared = BUILTIN_VARIABLES | set(business.variables)
        files = {f"templates.{key}": path for key, path in business.templates.items()}
        files |= {f"chain.{step.name}": step.template for step in business.chain}
        if business.system:
            files["system"] = business.system
        for model in business.allowed_models:
            if model not in business.templates and DEFAULT_TEMPLATE not in business.templates:
                problems.append(f"{where}.templates: no template for model {model!r} and no default")
        for field, path in files.items():
            if not settings.resolve(path).is_file():
                problems.append(f"{where}.{field}: template file {path} not found")
                continue
            try:
                undeclared = prompts.variables_of(path) - declared
            except TemplateSyntaxError as exc:
                problems.append(f"{where}.{field}: {path} line {exc.lineno}: {exc.message}")
                continue
            except TemplateNotFound as exc:
                problems.append(f"{where}.{field}: {path} includes {exc.name}, which is not found")
                continue
            if undeclared:
                problems.append(f"{where}.{field}: {path} uses undeclared variables {sorted(undeclared)}")
    for name, schema in app.output_schemas.items():
        if ":" not in schema and not settings.resolve(schema).is_file():
            problems.append(f"output_schemas.{name}: file {schema} not found")
    for path in app.moderation.lists:
        if not settings.resolve(path).is_file():
            problems.append(f"moderation.lists: file {path} not found")
    return problems


def _unhandled_steps(settings: Settings, business: str, steps: tuple[str, ...]) -> list[str]:
    """A step no agent reads and no route sends anywhere would strand every request of the business."""
    routes = settings.runtime.routes
    return [
        f"businesses.{business}.steps: no agent or route handles step {step!r} "
        f"(agents handle {', '.join(sorted(topology.STEP_AGENTS))}; add a runtime.routes entry for your own)"
        for step in steps
        if step not in routes and step.split(".", 1)[0] not in topology.STEP_AGENTS
    ]
