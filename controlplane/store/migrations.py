"""Versioned schema migrations, applied in order at start-up, each in its own transaction.

To change the schema, append a `Migration` with the next version; never edit one that has
shipped. A statement is plain SQL both backends accept, or a `{dialect: sql}` dict where they
differ. The schema keeps to portable types: TEXT, INTEGER/BIGINT, 0/1 for booleans, JSON and
ISO 8601 timestamps as TEXT.

With PostgreSQL several control nodes may start at once: `Database.migration()` holds an
advisory lock, so one node migrates and the others find the work done.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Union

from controlplane.store import errors
from controlplane.store.database import Database

log = logging.getLogger(__name__)

Statement = Union[str, dict[str, str]]


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[Statement, ...]

    def sql_for(self, dialect: str) -> list[str]:
        return [s if isinstance(s, str) else s[dialect] for s in self.statements]


# An app's add-ons (a PostgreSQL database, later Redis or a bucket): one row per resource a
# provider made for the app. A constant of its own because it was written beside another
# branch's migration: whichever merges second renumbers, and then only `4` changes here.
# `state` is where the create/destroy saga stands (controlplane/addons/service.py): a crash
# leaves `provisioning` or `deprovisioning`, and running the command again finishes it.
# `attached` 1: the add-on's config var is set on the app (destroy unsets it only then).
# No ON DELETE CASCADE: an app with add-ons is not deleted before they are destroyed, so no
# database is left behind on the add-on server without a row that names it.
ADDONS_MIGRATION = Migration(4, "add-ons: resources such as PostgreSQL databases attached to "
                                "apps", (
    """CREATE TABLE addons (
        id TEXT PRIMARY KEY,
        app_id TEXT NOT NULL REFERENCES apps (id),
        kind TEXT NOT NULL,
        name TEXT NOT NULL UNIQUE,
        resource TEXT NOT NULL UNIQUE,
        config_var TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('provisioning', 'ready', 'deprovisioning')),
        attached INTEGER NOT NULL DEFAULT 0 CHECK (attached IN (0, 1)),
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        UNIQUE (app_id, kind))""",
))

# Where each add-on's resource lives (the provider's `location()`, e.g. `127.0.0.1:5432`), so
# that a control plane given another add-on server refuses to finish or destroy it there rather
# than report a database dropped that still exists elsewhere. NULL: recorded before this
# column, where it is not checked. A constant of its own, like the one above, so that renumbering
# it after a parallel branch's migration is one number.
ADDON_LOCATION_MIGRATION = Migration(6, "add-ons: the server each add-on's resource lives on", (
    "ALTER TABLE addons ADD COLUMN location TEXT",
))

# Builds: one row per `dynomesh deploy` of a source directory (docs/builds.md). `output` is the
# build's kept output (its tail, at most controlplane.builds.output.KEPT_BYTES), written when the
# build ends; `node` the control node that runs it, so that a node that restarts after a crash
# marks the builds it left `pending` failed. `vms.stack` is what the VM's dyno manager reported
# of its stack (the interpreters it offers), as JSON. A constant of its own so that renumbering it
# after a parallel branch's migration is one number.
BUILDS_MIGRATION = Migration(7, "builds: source built into slugs; the stack each VM offers", (
    """CREATE TABLE builds (
        id TEXT PRIMARY KEY,
        app_id TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
        number INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
        source_checksum TEXT NOT NULL,
        buildpack TEXT,
        reason TEXT,
        output TEXT NOT NULL DEFAULT '',
        slug_id TEXT REFERENCES slugs(id) ON DELETE SET NULL,
        release_version INTEGER,
        node TEXT NOT NULL,
        created_at TEXT NOT NULL,
        finished_at TEXT,
        UNIQUE (app_id, number))""",
    "CREATE INDEX builds_pending ON builds (status) WHERE status = 'pending'",
    "ALTER TABLE vms ADD COLUMN stack TEXT NOT NULL DEFAULT '{}'",
))

# One-off dynos (`dynomesh run`, the release phase) and the release phase's result. `one_off`
# is NULL for a formation dyno, else JSON: the command, where its attached session waits
# (the control node's URL, NULL when detached), its terminal size, extra env, its time limit
# and whether it is a release's release phase (controlplane/store/models.py, `OneOff`).
# `phase_output` keeps the tail of a release phase's output, shown by `releases`. The
# `release` process type was once an ordinary formation entry; it never is again.
ONE_OFF_MIGRATION = Migration(8, "one-off dynos and the release phase", (
    "ALTER TABLE dynos ADD COLUMN one_off TEXT",
    "ALTER TABLE releases ADD COLUMN phase_output TEXT",
    "DELETE FROM formation WHERE type = 'release'",
))

# The VM pool (controlplane/pool/). `pool_vms`: one row per VM the pool launched, from the
# moment it decides to (`launching`, before the instance exists, so a crash between the two
# leaves a row the next leader finishes) through `active` (its agent registered), `draining`
# (no new dynos; its dynos get twins elsewhere) and `terminating`. `token_id`: the dynomgr
# token minted for it, revoked when it goes. `pool_settings`: min/max set by `pool:scale`
# (NULL: the control node's flags), the last provider error as the provider named it, and
# instances the provider shows that no row knows (JSON; reported, never touched).
# `dynos.replaces`: a drain twin's original (controlplane/scheduler/drain.py).
POOL_MIGRATION = Migration(9, "VM pool: launched VMs, pool settings, drain twins", (
    """CREATE TABLE pool_vms (
        vm_id TEXT PRIMARY KEY,
        provider TEXT NOT NULL,
        instance_id TEXT UNIQUE,
        state TEXT NOT NULL CHECK (state IN ('launching', 'active', 'draining',
                                             'terminating')),
        capacity_mb INTEGER NOT NULL CHECK (capacity_mb > 0),
        token_id TEXT,
        launched_at DOUBLE PRECISION NOT NULL,
        state_since DOUBLE PRECISION NOT NULL)""",
    """CREATE TABLE pool_settings (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        min_vms INTEGER,
        max_vms INTEGER,
        error_code TEXT,
        error_message TEXT,
        error_operation TEXT,
        error_at DOUBLE PRECISION,
        unknown_instances TEXT NOT NULL,
        reconciled_at DOUBLE PRECISION)""",
    "INSERT INTO pool_settings (id, unknown_instances) VALUES (1, '[]')",
    "ALTER TABLE dynos ADD COLUMN replaces TEXT",
))

# Apps' TLS certificates (controlplane/certs/): the PEM chain, the private key sealed under the
# control plane's certificate key (never stored in the clear), the leaf's facts for listings.
# `source` 'uploaded' (certs:add) or 'auto' (ACME, one per app domain: `domain` is the host it
# was issued for, replaced on renewal). A certificate goes with its app.
CERTIFICATES_MIGRATION = Migration(10, "TLS certificates of apps, private keys sealed", (
    """CREATE TABLE certificates (
        id TEXT PRIMARY KEY,
        app_id TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
        source TEXT NOT NULL CHECK (source IN ('uploaded', 'auto')),
        domain TEXT,
        names TEXT NOT NULL,
        not_before TEXT NOT NULL,
        not_after TEXT NOT NULL,
        issuer TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        chain TEXT NOT NULL,
        key_sealed TEXT NOT NULL,
        created_at TEXT NOT NULL,
        CHECK ((source = 'auto') = (domain IS NOT NULL)),
        UNIQUE (app_id, source, domain))""",
    "CREATE INDEX certificates_app ON certificates (app_id, created_at)",
))

# Automatic certificates (controlplane/acme/): the ACME account per directory URL, its key
# sealed like certificate keys (controlplane/certs/keybox.py, the directory URL as associated
# data); the apps that asked for them (`certs:auto:enable`); and per custom domain where its
# certificate stands (`pending`, `issued`, `failed` with the CA's reason), when it expires, the
# failures in a row and when to try again, and the HTTP-01 challenge being validated (token and
# key authorization, in the app's route entry while set). All go with their app or domain.
ACME_MIGRATION = Migration(11, "automatic certificates: ACME account, apps, state per domain", (
    """CREATE TABLE acme_accounts (
        directory_url TEXT PRIMARY KEY,
        key_sealed TEXT NOT NULL,
        created_at TEXT NOT NULL)""",
    """CREATE TABLE acme_apps (
        app_id TEXT PRIMARY KEY REFERENCES apps (id) ON DELETE CASCADE,
        enabled_at TEXT NOT NULL)""",
    """CREATE TABLE acme_domains (
        domain_id TEXT PRIMARY KEY REFERENCES domains (id) ON DELETE CASCADE,
        app_id TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
        status TEXT NOT NULL CHECK (status IN ('pending', 'issued', 'failed')),
        reason TEXT,
        not_after DOUBLE PRECISION,
        failures INTEGER NOT NULL DEFAULT 0,
        retry_at DOUBLE PRECISION,
        token TEXT,
        key_authorization TEXT,
        updated_at TEXT NOT NULL,
        CHECK ((token IS NULL) = (key_authorization IS NULL)))""",
    "CREATE INDEX acme_domains_app ON acme_domains (app_id)",
))

# Per-app router settings (controlplane/routersettings.py, `config:router`): one row per app
# that set any; NULL in a column means the router's or dyno manager's own flag decides.
# `dynos.unhealthy`: why a running web dyno failed its health check N times in a row, as its
# dyno manager reported it (NULL: healthy); such a dyno is left out of the route entry.
ROUTER_SETTINGS_MIGRATION = Migration(12, "per-app router settings; unhealthy web dynos", (
    """CREATE TABLE router_settings (
        app_id TEXT PRIMARY KEY REFERENCES apps (id) ON DELETE CASCADE,
        request_timeout DOUBLE PRECISION,
        max_body_bytes BIGINT,
        health_check_path TEXT,
        health_check_interval DOUBLE PRECISION,
        health_check_failures INTEGER,
        updated_at TEXT NOT NULL)""",
    "ALTER TABLE dynos ADD COLUMN unhealthy TEXT",
))

# Session affinity signing keys (controlplane/store/affinity.py): the newest signs, the ones
# before it still verify (docs/feeds.md).
AFFINITY_KEYS_MIGRATION = Migration(13, "session affinity: the routers' cookie signing keys", (
    """CREATE TABLE affinity_keys (
        id TEXT PRIMARY KEY,
        secret TEXT NOT NULL,
        generation INTEGER NOT NULL UNIQUE,
        created_at TEXT NOT NULL)""",
))

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "revision counter, change log, apps, slugs, releases, config, formation, "
                 "domains, features, tokens", (
        # The global revision (one locked row) and what changed at each revision.
        """CREATE TABLE revision (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            value BIGINT NOT NULL,
            pruned_through BIGINT NOT NULL)""",
        "INSERT INTO revision (id, value, pruned_through) VALUES (1, 0, 0)",
        """CREATE TABLE changes (
            revision BIGINT NOT NULL,
            feed TEXT NOT NULL,
            key TEXT NOT NULL,
            PRIMARY KEY (revision, feed, key))""",
        "CREATE INDEX changes_by_feed ON changes (feed, revision)",
        """CREATE TABLE apps (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            maintenance INTEGER NOT NULL DEFAULT 0 CHECK (maintenance IN (0, 1)),
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL)""",
        """CREATE TABLE slugs (
            id TEXT PRIMARY KEY,
            app_id TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
            checksum TEXT NOT NULL,
            size BIGINT NOT NULL CHECK (size >= 0),
            process_types TEXT NOT NULL,
            created_at TEXT NOT NULL)""",
        "CREATE INDEX slugs_by_app ON slugs (app_id)",
        """CREATE TABLE releases (
            id TEXT PRIMARY KEY,
            app_id TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
            version INTEGER NOT NULL CHECK (version > 0),
            slug_id TEXT REFERENCES slugs (id) ON DELETE CASCADE,
            description TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
            config TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            UNIQUE (app_id, version))""",
        """CREATE TABLE config_vars (
            app_id TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (app_id, key))""",
        """CREATE TABLE formation (
            app_id TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
            type TEXT NOT NULL,
            quantity INTEGER NOT NULL CHECK (quantity >= 0),
            size TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (app_id, type))""",
        """CREATE TABLE domains (
            id TEXT PRIMARY KEY,
            app_id TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
            hostname TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL)""",
        "CREATE INDEX domains_by_app ON domains (app_id)",
        """CREATE TABLE app_features (
            app_id TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            enabled INTEGER NOT NULL CHECK (enabled IN (0, 1)),
            updated_at TEXT NOT NULL,
            PRIMARY KEY (app_id, name))""",
        """CREATE TABLE tokens (
            id TEXT PRIMARY KEY,
            role TEXT NOT NULL CHECK (role IN ('user', 'router', 'dynomgr')),
            vm_id TEXT,
            digest TEXT NOT NULL UNIQUE,
            description TEXT NOT NULL,
            created_at TEXT NOT NULL,
            CHECK ((role = 'dynomgr') = (vm_id IS NOT NULL)))""",
    )),
    Migration(2, "VMs, dynos (desired placement and observed state), scheduler leadership, "
                 "control nodes", (
        # A VM is known once its dyno manager registered. Times the control plane compares
        # (heartbeats, observed states) are Unix seconds; the agents report them that way.
        """CREATE TABLE vms (
            id TEXT PRIMARY KEY,
            address TEXT NOT NULL,
            capacity_mb INTEGER NOT NULL CHECK (capacity_mb > 0),
            port_low INTEGER NOT NULL,
            port_high INTEGER NOT NULL,
            version TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('ready', 'lost')),
            registered_at TEXT NOT NULL,
            heartbeat_at DOUBLE PRECISION NOT NULL,
            lost_at TEXT,
            CHECK (port_low <= port_high))""",
        # One row per dyno the platform wants. `vm_id` NULL: unplaced (no VM has room).
        # `serving` 0: a preboot dyno that routes do not list yet. `take_out`: the dyno left the
        # route feed at `take_out_revision` and is stopped or restarted once routers have it.
        # `restart_generation` is the assignment's `restart` field (ps:restart bumps it).
        # state..error_code are what its dyno manager last reported.
        """CREATE TABLE dynos (
            id TEXT PRIMARY KEY,
            app_id TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
            type TEXT NOT NULL,
            number INTEGER NOT NULL CHECK (number > 0),
            release_version INTEGER NOT NULL CHECK (release_version > 0),
            size TEXT NOT NULL,
            memory_mb INTEGER NOT NULL CHECK (memory_mb > 0),
            vm_id TEXT REFERENCES vms (id) ON DELETE SET NULL,
            serving INTEGER NOT NULL CHECK (serving IN (0, 1)),
            restart_generation INTEGER NOT NULL DEFAULT 0,
            take_out TEXT CHECK (take_out IN ('stop', 'restart')),
            take_out_revision BIGINT,
            take_out_at DOUBLE PRECISION,
            state TEXT CHECK (state IN ('starting', 'up', 'crashed', 'down', 'stopping')),
            address TEXT,
            state_since DOUBLE PRECISION,
            restarts INTEGER NOT NULL DEFAULT 0,
            reason TEXT,
            error_code TEXT,
            created_at TEXT NOT NULL,
            CHECK ((take_out IS NULL) = (take_out_revision IS NULL)))""",
        "CREATE INDEX dynos_by_app ON dynos (app_id, type, number)",
        "CREATE INDEX dynos_by_vm ON dynos (vm_id)",
        "CREATE INDEX dynos_taken_out ON dynos (take_out_revision) WHERE take_out IS NOT NULL",
        "CREATE INDEX dynos_unplaced ON dynos (app_id) WHERE vm_id IS NULL",
        # Scheduler leadership: the node that holds the lock bumps `epoch`; every scheduler
        # transaction checks it, so a deposed leader cannot write after a new one took over.
        """CREATE TABLE scheduler_leader (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            epoch BIGINT NOT NULL,
            node TEXT,
            since DOUBLE PRECISION)""",
        "INSERT INTO scheduler_leader (id, epoch) VALUES (1, 0)",
        # Control nodes sharing a PostgreSQL database: how far their route-feed followers got,
        # so the leader knows when every router has a dyno out of its table.
        """CREATE TABLE control_nodes (
            id TEXT PRIMARY KEY,
            started_at DOUBLE PRECISION NOT NULL,
            seen_at DOUBLE PRECISION NOT NULL,
            route_followers INTEGER NOT NULL,
            route_revision BIGINT NOT NULL)""",
    )),
    Migration(3, "app log lines: the last lines of each app's log stream", (
        # `seq` numbers an app's lines in the order they were stored, densely: the row is
        # locked by each insert, so on PostgreSQL an app's lines commit in `seq` order across
        # control nodes and a reader that saw seq N has seen every line up to N.
        """CREATE TABLE log_heads (
            app_id TEXT PRIMARY KEY REFERENCES apps (id) ON DELETE CASCADE,
            seq BIGINT NOT NULL)""",
        # `at` is the line's RFC 5424 timestamp (UTC, microseconds), which sorts as text.
        # Clustered by (app, seq): an app's lines are one range, appended at its end and
        # pruned from its start.
        {"sqlite": """CREATE TABLE log_lines (
            app_id TEXT NOT NULL REFERENCES log_heads (app_id) ON DELETE CASCADE,
            seq BIGINT NOT NULL,
            at TEXT NOT NULL,
            source TEXT NOT NULL,
            process TEXT NOT NULL,
            text TEXT NOT NULL,
            PRIMARY KEY (app_id, seq)) WITHOUT ROWID""",
         "postgresql": """CREATE TABLE log_lines (
            app_id TEXT NOT NULL REFERENCES log_heads (app_id) ON DELETE CASCADE,
            seq BIGINT NOT NULL,
            at TEXT NOT NULL,
            source TEXT NOT NULL,
            process TEXT NOT NULL,
            text TEXT NOT NULL,
            PRIMARY KEY (app_id, seq))"""},
    )),
    ADDONS_MIGRATION,
    Migration(5, "log drains: where each app's log stream goes, and which node delivers it", (
        # `token` is the drain's public name (Heroku's `d.<uuid>`); `url` may hold a credential
        # and is shown masked. `cursor` is the seq of the app's newest line the drain sent: a
        # node taking the drain over resumes after it. `owner`/`lease_until`/`lease_epoch`:
        # the lease of the control node delivering it (Unix seconds; the epoch fences a node
        # whose lease was taken over). sent..last_error_at: delivery totals, written with
        # each lease renewal so any node can show them.
        """CREATE TABLE drains (
            id TEXT PRIMARY KEY,
            app_id TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
            url TEXT NOT NULL,
            token TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            cursor BIGINT NOT NULL,
            owner TEXT,
            lease_until DOUBLE PRECISION,
            lease_epoch BIGINT NOT NULL DEFAULT 0,
            sent BIGINT NOT NULL DEFAULT 0,
            dropped BIGINT NOT NULL DEFAULT 0,
            retries BIGINT NOT NULL DEFAULT 0,
            last_error TEXT,
            last_error_at DOUBLE PRECISION,
            UNIQUE (app_id, url),
            CHECK ((owner IS NULL) = (lease_until IS NULL)))""",
    )),
    ADDON_LOCATION_MIGRATION,
    BUILDS_MIGRATION,
    ONE_OFF_MIGRATION,
    POOL_MIGRATION,
    CERTIFICATES_MIGRATION,
    ACME_MIGRATION,
    ROUTER_SETTINGS_MIGRATION,
    AFFINITY_KEYS_MIGRATION,
)

LATEST = MIGRATIONS[-1].version

_CREATE_LEDGER = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at TEXT NOT NULL)"""


def _check_sequence(migrations: tuple[Migration, ...]) -> None:
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise RuntimeError(f"migration versions must be 1, 2, 3, ... in order; got {versions}")


async def _ledger_version(tx) -> int:
    """The schema version the ledger records (0 for a new database), the ledger made first."""
    await tx.execute(_CREATE_LEDGER)
    return int(await tx.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_migrations"))


async def schema_version(db: Database) -> int:
    async with db.migration() as tx:
        return await _ledger_version(tx)


async def migrate(db: Database, migrations: tuple[Migration, ...] = MIGRATIONS) -> list[int]:
    """Apply the migrations this database lacks; return the versions applied."""
    _check_sequence(migrations)
    applied: list[int] = []
    for migration in migrations:
        async with db.migration() as tx:
            current = await _ledger_version(tx)
            if current > migrations[-1].version:
                raise errors.SchemaTooNew(
                    f"the database is at schema version {current}, newer than this dynomesh "
                    f"knows ({migrations[-1].version}); run a newer dynomesh")
            if migration.version <= current:
                continue
            for statement in migration.sql_for(db.dialect):
                await tx.execute(statement)
            await tx.execute(
                "INSERT INTO schema_migrations (version, description, applied_at) "
                "VALUES ($1, $2, $3)", migration.version, migration.description,
                datetime.now(timezone.utc).isoformat(timespec="seconds"))
            log.info("store: applied migration %d (%s)", migration.version, migration.description)
            applied.append(migration.version)
    return applied
