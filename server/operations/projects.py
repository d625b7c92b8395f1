"""Projects: creation, stages, tokens, deletion and purging by the coordinator."""

from __future__ import annotations

from linkage.errors import InvalidRequestError, NotFoundError, RunStateError

from ..auth import hash_token, new_token
from ..storage import EntitySchemaRow, Store
from .common import (
    _ATTRIBUTE,
    MAX_AGENCIES,
    MAX_ENTITY_TYPES,
    MAX_STAGES,
    RESERVED_NAMES,
    _check_name,
    _check_not_purged,
)

__all__ = ["create_project", "delete_project", "purge_project", "reissue_agency_token",
           "set_project_stages"]


def create_project(store: Store, name: str, schema_json: str, agencies: list[str],
                   stages: list[str] | None = None,
                   entity_schemas: dict[str, str] | None = None):
    """Create a project; returns (project, {agency: token}). Tokens are shown only here."""
    stages = list(stages or [])
    for stage in stages:
        if not _ATTRIBUTE.match(stage):
            raise InvalidRequestError(f"Stage {stage!r} is not allowed: use lowercase letters, "
                                      "digits and '_' (at most 32).")
    if len(set(stages)) != len(stages):
        raise InvalidRequestError("A stage is listed twice.")
    _check_name("Project", name)
    if len(agencies) < 2:
        raise InvalidRequestError("A project needs at least two agencies (--agencies a,b).")
    if len(agencies) > MAX_AGENCIES:
        raise InvalidRequestError(f"A project takes at most {MAX_AGENCIES} agencies, not "
                                  f"{len(agencies)}.")
    if len(stages) > MAX_STAGES or len(entity_schemas or {}) > MAX_ENTITY_TYPES:
        raise InvalidRequestError(f"A project takes at most {MAX_STAGES} stages and "
                                  f"{MAX_ENTITY_TYPES} further entity types.")
    if len(set(agencies)) != len(agencies):
        raise InvalidRequestError("An agency is listed twice in --agencies.")
    for agency in agencies:
        _check_name("Agency", agency)
        if agency in RESERVED_NAMES:
            raise InvalidRequestError(f"{agency!r} names a role and cannot name an agency (its "
                                      "follow-ups would read as the role's); choose another.")
    from linkage.encoding.schema import load_schema  # jsonschema and clkhash: not at start-up
    schema = load_schema(schema_json)
    extra = []
    for entity_type, text in (entity_schemas or {}).items():
        if not _ATTRIBUTE.match(entity_type) or entity_type == "person":
            raise InvalidRequestError(f"Entity type {entity_type!r} is not allowed: lowercase "
                                      "letters, digits and '_', and not 'person' (the main "
                                      "schema is the person schema).")
        parsed = load_schema(text)
        extra.append(EntitySchemaRow(entity_type, parsed.text, parsed.fingerprint,
                                     parsed.clk_bits))
    tokens = {agency: new_token() for agency in agencies}
    project = store.create_project(name, schema.text, schema.fingerprint, schema.clk_bits,
                                   [(agency, hash_token(tokens[agency])) for agency in agencies],
                                   stages, extra)
    return project, tokens


def purge_project(store: Store, project_name: str) -> tuple[int, int]:
    """Delete a linked project's CLKs and pairs; returns (CLKs deleted, pair blocks deleted).

    Raises:
        RunStateError: the project has no finished run yet (purging first would lose the
            data before anything was learnt from it) or a run is in progress.
    """
    project = store.project(project_name)
    # server 1 of a two-server project stores no runs (server 0 does): its shares may go
    if store.latest_run(project.id) is None and store.share_role(project.id) != 1:
        raise RunStateError(f"Project {project_name!r} has never been linked, so there is "
                            "nothing to purge after: run it with 'linkage run', or, if it is "
                            "misconfigured, delete it with 'linkage project delete --project "
                            f"{project_name}'.")
    if store.run_in_progress(project.id):
        raise RunStateError(f"A linkage run of {project_name!r} is in progress; purge after it "
                            "ends.")
    return store.purge_project(project.id)


# -- project maintenance by the coordinator, and follow-up lists (issue 15) ----------------------

def _check_stages(stages: list[str]) -> None:
    for stage in stages:
        if not _ATTRIBUTE.match(stage):
            raise InvalidRequestError(f"Stage {stage!r} is not allowed: use lowercase letters, "
                                      "digits and '_' (at most 32).")
    if len(set(stages)) != len(stages):
        raise InvalidRequestError("A stage is listed twice.")


def set_project_stages(store: Store, project_name: str, stages: list[str]) -> list[str]:
    """Replace a project's stage vocabulary; returns it.

    Raises:
        InvalidRequestError: a malformed or repeated stage, or a stage that stored records
            carry is left out (their network positions would lose their meaning).
        RunStateError: the project was purged.
    """
    _check_stages(stages)
    project = store.project(project_name)
    _check_not_purged(project)
    dropped = sorted(store.stages_in_use(project.id) - set(stages))
    if dropped:
        raise InvalidRequestError(f"Stored records of {project_name!r} carry the stage(s) "
                                  f"{', '.join(dropped)}; keep them in the vocabulary.")
    store.set_stages(project.id, stages)
    return stages


def delete_project(store: Store, project_name: str) -> tuple[int, int]:
    """Delete a project that no run has touched; returns (batches, records) deleted.

    Raises:
        RunStateError: a run of the project started once (its results and reports are
            evidence: purge it instead, which keeps them).
    """
    project = store.project(project_name)
    if store.has_run(project.id):
        raise RunStateError(f"Project {project_name!r} has been linked: its reports, results "
                            "and reviews stay as a record, so it cannot be deleted. Delete its "
                            f"CLKs with 'linkage project purge --project {project_name}'.")
    return store.delete_project(project.id)


def reissue_agency_token(store: Store, project_name: str, agency_name: str) -> str:
    """A new token for one agency; the old one stops working. Returns the new token."""
    project = store.project(project_name)
    agency = next((a for a in store.agencies(project.id) if a.name == agency_name), None)
    if agency is None:
        names = ", ".join(a.name for a in store.agencies(project.id))
        raise NotFoundError(f"Project {project_name!r} has no agency {agency_name!r} "
                            f"(agencies: {names}).")
    token = new_token()
    store.set_agency_token(agency.id, hash_token(token))
    return token
