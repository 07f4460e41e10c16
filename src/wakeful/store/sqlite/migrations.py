"""Versioned schema migrations, tracked in SQLite's ``user_version``.

Append new versions; never edit a released one. Each version runs in its own
transaction, so a failed migration leaves the store at the previous version.
"""

from __future__ import annotations

from wakeful.store.mail import QUESTIONS_LIKE

MIGRATIONS: list[str] = [
    # 1: agents, tasks, conversations, the event log, runs
    """
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        started_at REAL NOT NULL,
        ended_at REAL,
        pid INTEGER NOT NULL
    );
    CREATE TABLE agents (
        name TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        restarts INTEGER NOT NULL DEFAULT 0,
        updated_at REAL NOT NULL
    );
    CREATE TABLE tasks (
        id TEXT PRIMARY KEY,
        agent TEXT NOT NULL,
        instruction TEXT NOT NULL,
        state TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL,
        step INTEGER NOT NULL DEFAULT 0,
        attempt INTEGER NOT NULL DEFAULT 0,
        result TEXT,
        error TEXT,
        error_kind TEXT,
        parent_id TEXT,
        created_by TEXT NOT NULL DEFAULT 'system',
        input_tokens INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        tool_calls INTEGER NOT NULL DEFAULT 0,
        scratch TEXT,
        trace_id TEXT,
        cause_id TEXT
    );
    CREATE INDEX tasks_agent_state ON tasks(agent, state);
    CREATE INDEX tasks_state ON tasks(state);
    CREATE INDEX tasks_trace ON tasks(trace_id);
    CREATE INDEX tasks_parent ON tasks(parent_id);
    CREATE INDEX tasks_cause ON tasks(cause_id);
    CREATE TABLE task_messages (
        task_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (task_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts REAL NOT NULL,
        run_id TEXT,
        type TEXT NOT NULL,
        agent TEXT,
        task_id TEXT,
        correlation_id TEXT,
        causation_id TEXT,
        data TEXT NOT NULL
    );
    CREATE INDEX events_agent ON events(agent, id);
    CREATE INDEX events_task ON events(task_id, id);
    CREATE INDEX events_type ON events(type, id);
    CREATE INDEX events_correlation ON events(correlation_id, id);
    """,
    # 2: resources: explicit locks (the row id is the fencing token), their waiters,
    # and the shared key-value scratchpad
    """
    CREATE TABLE resource_locks (
        token INTEGER PRIMARY KEY AUTOINCREMENT,
        resource TEXT NOT NULL,
        mode TEXT NOT NULL CHECK (mode IN ('read', 'write')),
        holder_task TEXT NOT NULL,
        holder_agent TEXT NOT NULL,
        process TEXT NOT NULL,
        pid INTEGER NOT NULL,
        acquired_at REAL NOT NULL,
        renewed_at REAL NOT NULL,
        expires_at REAL NOT NULL
    );
    CREATE INDEX resource_locks_resource ON resource_locks(resource);
    CREATE INDEX resource_locks_holder ON resource_locks(holder_task);
    CREATE INDEX resource_locks_expiry ON resource_locks(expires_at);
    CREATE TABLE resource_waiters (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        resource TEXT NOT NULL,
        mode TEXT NOT NULL CHECK (mode IN ('read', 'write')),
        kind TEXT NOT NULL,
        holder_task TEXT NOT NULL,
        holder_agent TEXT NOT NULL,
        process TEXT NOT NULL,
        pid INTEGER NOT NULL,
        since REAL NOT NULL,
        alive_until REAL NOT NULL
    );
    CREATE INDEX resource_waiters_resource ON resource_waiters(resource);
    CREATE TABLE kv_entries (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        version INTEGER NOT NULL,
        updated_at REAL NOT NULL,
        updated_by TEXT
    );
    """,
    # 3: model providers: what each task's model calls cost (price table in wakeful.yaml)
    """
    ALTER TABLE tasks ADD COLUMN cost REAL NOT NULL DEFAULT 0;
    """,
    # 4: the mailbox: mail, one delivery per mailbox reached, channels, delegations
    """
    CREATE TABLE mail (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        sender TEXT NOT NULL,
        recipient TEXT NOT NULL,
        subject TEXT NOT NULL,
        body TEXT NOT NULL,
        payload TEXT,
        priority INTEGER NOT NULL,
        thread_id TEXT NOT NULL,
        in_reply_to TEXT,
        reply_to TEXT NOT NULL,
        correlation_id TEXT,
        causation_id TEXT,
        idempotency_key TEXT,
        created_at REAL NOT NULL
    );
    CREATE UNIQUE INDEX mail_idempotency ON mail(sender, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    CREATE INDEX mail_recipient ON mail(recipient, seq);
    CREATE INDEX mail_thread ON mail(thread_id, seq);
    CREATE INDEX mail_correlation ON mail(correlation_id) WHERE correlation_id IS NOT NULL;
    CREATE TABLE mail_deliveries (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        mail_id TEXT NOT NULL,
        owner TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        delivered_at REAL,
        read_at REAL,
        acked_at REAL,
        lease_until REAL,
        last_error TEXT,
        UNIQUE (mail_id, owner)
    );
    CREATE INDEX mail_deliveries_open ON mail_deliveries(status)
        WHERE status IN ('pending', 'delivered');
    CREATE INDEX mail_deliveries_owner ON mail_deliveries(owner, seq);
    CREATE TABLE mail_channels (
        name TEXT PRIMARY KEY,
        topic TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        created_by TEXT NOT NULL
    );
    CREATE TABLE mail_channel_members (
        channel TEXT NOT NULL,
        member TEXT NOT NULL,
        added_at REAL NOT NULL,
        read_seq INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (channel, member)
    ) WITHOUT ROWID;
    CREATE TABLE mail_delegations (
        task_id TEXT PRIMARY KEY,
        agent TEXT NOT NULL,
        delegator TEXT NOT NULL,
        reply_to TEXT NOT NULL,
        correlation_id TEXT NOT NULL,
        key TEXT,
        created_at REAL NOT NULL,
        reported_at REAL
    );
    CREATE UNIQUE INDEX mail_delegations_key ON mail_delegations(delegator, key)
        WHERE key IS NOT NULL;
    CREATE TABLE mail_wakeups (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        mail_id TEXT,
        owner TEXT
    );
    """,
    # 5: sleep and wake: durable timers (one-shot, interval, cron), the waits of tasks
    # and agents (a wait is a row, so a resumed task does not sleep from scratch), and
    # the progress tasks report
    """
    CREATE TABLE timers (
        id TEXT PRIMARY KEY,
        key TEXT UNIQUE,
        kind TEXT NOT NULL CHECK (kind IN ('at', 'every', 'cron', 'event')),
        spec TEXT NOT NULL,
        timezone TEXT NOT NULL DEFAULT 'UTC',
        anchor REAL NOT NULL DEFAULT 0,
        action TEXT NOT NULL CHECK (action IN ('start_task', 'wake_task', 'wake_agent')),
        agent TEXT,
        task_id TEXT,
        instruction TEXT,
        purpose TEXT NOT NULL DEFAULT '',
        misfire TEXT NOT NULL DEFAULT 'once' CHECK (misfire IN ('once', 'skip', 'all')),
        max_runs INTEGER,
        state TEXT NOT NULL CHECK (state IN ('active', 'done', 'cancelled')),
        next_due REAL,
        last_fired REAL,
        fired INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        created_by TEXT NOT NULL,
        conditions TEXT,
        outcome TEXT,
        ended_at REAL
    );
    CREATE INDEX timers_active ON timers(state, next_due);
    CREATE INDEX timers_task ON timers(task_id) WHERE task_id IS NOT NULL;
    CREATE INDEX timers_agent ON timers(agent, state);
    ALTER TABLE tasks ADD COLUMN progress REAL;
    ALTER TABLE tasks ADD COLUMN progress_note TEXT;
    """,
    # 6: exactly once in effect. Agents are owned by one live worker through a lease
    # (owner, epoch, expiry); every write an owner makes is fenced by owner and epoch.
    # A task's run is claimed (queued -> running) by one worker; a delivery records the
    # task that holds it; which task holds which lock token outlives the lock row.
    """
    CREATE TABLE workers (
        id TEXT PRIMARY KEY,
        pid INTEGER NOT NULL,
        host TEXT NOT NULL,
        started_at REAL NOT NULL,
        expires_at REAL NOT NULL
    );
    CREATE TABLE agent_leases (
        agent TEXT PRIMARY KEY,
        owner TEXT,
        epoch INTEGER NOT NULL DEFAULT 0,
        acquired_at REAL,
        expires_at REAL NOT NULL DEFAULT 0
    );
    CREATE INDEX agent_leases_owner ON agent_leases(owner);
    ALTER TABLE tasks ADD COLUMN owner TEXT;
    ALTER TABLE mail_deliveries ADD COLUMN holder TEXT;
    ALTER TABLE mail_wakeups ADD COLUMN at REAL NOT NULL DEFAULT 0;
    CREATE TABLE lock_grants (
        task_id TEXT NOT NULL,
        resource TEXT NOT NULL,
        token INTEGER NOT NULL,
        granted_at REAL NOT NULL,
        PRIMARY KEY (task_id, resource)
    ) WITHOUT ROWID;
    """,
    # 7: commands for an agent another worker owns (pause, stop, cancel a task...): any
    # process may write one; the owner takes it (once) and carries it out
    """
    CREATE TABLE agent_commands (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        agent TEXT NOT NULL,
        command TEXT NOT NULL,
        argument TEXT,
        requested_at REAL NOT NULL,
        taken_at REAL
    );
    CREATE INDEX agent_commands_open ON agent_commands(agent) WHERE taken_at IS NULL;
    """,
    # 8: A2A: which tasks were started over A2A (their context, the caller's messages
    # and metadata) and the push-notification configs callers registered for them
    """
    CREATE TABLE a2a_tasks (
        task_id TEXT PRIMARY KEY,
        agent TEXT NOT NULL,
        context_id TEXT NOT NULL,
        message_id TEXT NOT NULL,
        metadata TEXT NOT NULL DEFAULT '{}',
        history TEXT NOT NULL DEFAULT '[]',
        created_at REAL NOT NULL
    );
    CREATE INDEX a2a_tasks_agent ON a2a_tasks(agent, created_at);
    CREATE INDEX a2a_tasks_context ON a2a_tasks(context_id);
    CREATE TABLE a2a_push_configs (
        task_id TEXT NOT NULL,
        id TEXT NOT NULL,
        config TEXT NOT NULL,
        created_at REAL NOT NULL,
        delivered_state TEXT,
        PRIMARY KEY (task_id, id)
    ) WITHOUT ROWID;
    """,
    # 9: a task whose final answer was cut off by the model's output limit says so
    """
    ALTER TABLE tasks ADD COLUMN truncated INTEGER NOT NULL DEFAULT 0;
    """,
    # 10: people's approvals of tool calls: one row per call (its key: task, step and
    # call), decided once (pending -> approved | denied); decided_seq orders decisions
    # for runtimes in other processes that watch for them
    """
    CREATE TABLE approvals (
        id TEXT PRIMARY KEY,
        key TEXT NOT NULL UNIQUE,
        task_id TEXT NOT NULL,
        agent TEXT NOT NULL,
        tool TEXT NOT NULL,
        arguments TEXT NOT NULL,
        summary TEXT NOT NULL,
        approvers TEXT NOT NULL DEFAULT '[]',
        on_timeout TEXT NOT NULL DEFAULT 'deny',
        due_at REAL,
        call_id TEXT NOT NULL DEFAULT '',
        state TEXT NOT NULL,
        created_at REAL NOT NULL,
        decided_at REAL,
        decided_by TEXT,
        reason TEXT,
        new_arguments TEXT,
        decided_seq INTEGER
    );
    CREATE INDEX approvals_state ON approvals(state, created_at);
    CREATE INDEX approvals_task ON approvals(task_id);
    CREATE UNIQUE INDEX approvals_decided ON approvals(decided_seq)
        WHERE decided_seq IS NOT NULL;
    """,
    # 11: people with their own API tokens (stored hashed) and a role
    """
    CREATE TABLE people (
        name TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        token_hash TEXT NOT NULL UNIQUE,
        created_at REAL NOT NULL,
        created_by TEXT NOT NULL
    );
    """,
    # 12: agents made at run time (API, CLI, spawn_agent): their definition as JSON;
    # a removed one keeps a tombstone (removed_at, and what to do with its running
    # tasks) so that every worker sees the removal
    """
    CREATE TABLE stored_agents (
        name TEXT PRIMARY KEY,
        definition TEXT NOT NULL,
        created_by TEXT NOT NULL,
        parent TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        version INTEGER NOT NULL DEFAULT 1,
        removed_at REAL,
        removal TEXT
    );
    CREATE INDEX stored_agents_parent ON stored_agents(parent);
    """,
    # 13: one answering task per person's mail and agent, whichever worker starts it
    # (two workers that both saw the mail before either acked it start one task)
    # (duplicates that an older version made keep their rows, their cause marked)
    """
    UPDATE tasks SET cause_id = cause_id || '#' || id WHERE cause_id IS NOT NULL
        AND created_by LIKE 'person:%' AND id NOT IN (SELECT MIN(id) FROM tasks
        WHERE cause_id IS NOT NULL AND created_by LIKE 'person:%' GROUP BY agent, cause_id);
    CREATE UNIQUE INDEX tasks_answering ON tasks(agent, cause_id)
        WHERE cause_id IS NOT NULL AND created_by LIKE 'person:%';
    """,
    # 14: the questions asked of a person (an inbox reads them, not all their mail)
    f"CREATE INDEX mail_questions ON mail(recipient, seq) WHERE payload LIKE "
    f"'{QUESTIONS_LIKE}';",
]
