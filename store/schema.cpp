// The one schema source: ordered migrations, applied in order at open; PRAGMA user_version
// holds how many have run. Never edit a migration that has shipped: append a new one.
#include "store/schema.h"

namespace slm::store {

// clang-format off
const std::vector<migration>& migrations() {
    static const std::vector<migration> list = {
    {1, "pipeline tables: runs, calls, quarantine, clusters, cluster_members, selections, adapters, eval_results", R"SQL(
CREATE TABLE runs (
    id          INTEGER PRIMARY KEY,
    command     TEXT NOT NULL,                 -- collect, cluster, select, finetune, eval, run
    params      TEXT NOT NULL DEFAULT '{}',    -- resolved parameters (JSON)
    started     TEXT NOT NULL,                 -- ISO-8601 UTC
    finished    TEXT,
    status      TEXT NOT NULL DEFAULT 'running'
                CHECK (status IN ('running', 'ok', 'failed', 'interrupted')),
    summary     TEXT NOT NULL DEFAULT '{}'     -- what the run produced (JSON)
);

-- One normalized LLM call (S1), scrubbed before it was written (S2).
CREATE TABLE calls (
    id                INTEGER PRIMARY KEY,
    content_id        TEXT NOT NULL UNIQUE,    -- hash of normalized request + response: dedupe key
    response_id       TEXT,                    -- provider's chat.completion id, when present
    run_id            INTEGER NOT NULL REFERENCES runs(id),
    source_file       TEXT NOT NULL,
    source_line       INTEGER NOT NULL,
    format            TEXT NOT NULL,           -- flywheel, pair, finetune, legacy_functions, otel
    workload_id       TEXT,                    -- agent node
    client_id         TEXT,
    timestamp         TEXT,
    model             TEXT,
    messages          TEXT NOT NULL,           -- JSON array of request messages
    tools             TEXT,                    -- JSON array of tool definitions, or NULL
    response_text     TEXT,
    response_tool_calls TEXT,                  -- JSON array of {name, arguments (parsed JSON)}
    finish_reason     TEXT,
    latency_ms        REAL,
    prompt_tokens     INTEGER,
    completion_tokens INTEGER,
    task_text         TEXT NOT NULL DEFAULT '',-- what clustering embeds
    scrubbed          TEXT NOT NULL DEFAULT '{}', -- placeholder counts per kind (JSON)
    flags             TEXT NOT NULL DEFAULT '[]'  -- oddities noticed by validation (JSON array)
);
CREATE INDEX calls_response_id ON calls(response_id);
CREATE INDEX calls_workload ON calls(workload_id);
CREATE INDEX calls_run ON calls(run_id);

-- Lines that could not be parsed or normalized: never silently dropped.
CREATE TABLE quarantine (
    id          INTEGER PRIMARY KEY,
    run_id      INTEGER NOT NULL REFERENCES runs(id),
    source_file TEXT NOT NULL,
    source_line INTEGER NOT NULL,
    raw_hash    TEXT NOT NULL,                 -- hash of the raw line: re-ingesting adds nothing
    reason      TEXT NOT NULL,                 -- short machine-readable kind (invalid_json, ...)
    detail      TEXT NOT NULL DEFAULT '',      -- human message (field, expected vs found)
    raw         TEXT NOT NULL,                 -- scrubbed raw text (invalid UTF-8 escaped)
    UNIQUE (source_file, source_line, raw_hash)
);

-- S3: one row per cluster of a clustering run; centroid as float32 blob.
CREATE TABLE clusters (
    id          INTEGER PRIMARY KEY,
    run_id      INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    idx         INTEGER NOT NULL,              -- 0..k-1 within the run; -1 for noise
    label       TEXT NOT NULL DEFAULT '',
    size        INTEGER NOT NULL DEFAULT 0,
    share       REAL NOT NULL DEFAULT 0,
    suitability REAL,                          -- SLM suitability in [0,1]
    stats       TEXT NOT NULL DEFAULT '{}',    -- terms, workloads, tool share, lengths (JSON)
    reasons     TEXT NOT NULL DEFAULT '[]',    -- why the suitability score (JSON)
    centroid    BLOB,
    UNIQUE (run_id, idx)
);
CREATE TABLE cluster_members (
    run_id      INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    call_id     INTEGER NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
    cluster_id  INTEGER NOT NULL REFERENCES clusters(id) ON DELETE CASCADE,
    distance    REAL,
    PRIMARY KEY (run_id, call_id)
);
CREATE INDEX cluster_members_cluster ON cluster_members(cluster_id);

-- S4: candidate SLMs ranked per cluster.
CREATE TABLE selections (
    id          INTEGER PRIMARY KEY,
    run_id      INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    cluster_id  INTEGER NOT NULL REFERENCES clusters(id) ON DELETE CASCADE,
    model       TEXT NOT NULL,                 -- path or name of the candidate
    rank        INTEGER NOT NULL,
    score       REAL NOT NULL,
    details     TEXT NOT NULL DEFAULT '{}'
);

-- S5: LoRA adapters trained on a cluster's calls.
CREATE TABLE adapters (
    id          INTEGER PRIMARY KEY,
    run_id      INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    cluster_id  INTEGER REFERENCES clusters(id) ON DELETE SET NULL,
    base_model  TEXT NOT NULL,
    path        TEXT NOT NULL,                 -- adapter file on disk
    rank        INTEGER NOT NULL,
    alpha       REAL NOT NULL,
    params      TEXT NOT NULL DEFAULT '{}',
    metrics     TEXT NOT NULL DEFAULT '{}',
    created     TEXT NOT NULL
);

-- eval: per held-out call, the SLM's answer against the logged LLM answer.
CREATE TABLE eval_results (
    id          INTEGER PRIMARY KEY,
    run_id      INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    adapter_id  INTEGER REFERENCES adapters(id) ON DELETE CASCADE,
    call_id     INTEGER NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
    score       REAL,
    passed      INTEGER,
    output      TEXT,
    details     TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX eval_results_run ON eval_results(run_id);
)SQL"},
    {2, "cluster_models: what a clustering run needs to embed a new call the same way (slmctl route)", R"SQL(
-- S3: one per clustering run: the embedder's name, resolved params and its fitted state
-- (tfidf: idf table and the sketch+PCA projection), so assign() embeds new calls like the run did,
-- and the k-means cells whose owners are the clusters (a new call joins its nearest cell's cluster).
CREATE TABLE cluster_models (
    run_id      INTEGER PRIMARY KEY REFERENCES runs(id) ON DELETE CASCADE,
    embedder    TEXT NOT NULL,                 -- tfidf, minilm, model:PATH
    dim         INTEGER NOT NULL,              -- embedding (and centroid) dimension
    params      TEXT NOT NULL DEFAULT '{}',    -- embedder parameters (JSON)
    blob        BLOB NOT NULL,                 -- fitted state, format owned by clustering/
    cells       BLOB NOT NULL,                 -- float32 (n_cells, dim): k-means cell centroids
    cell_owner  TEXT NOT NULL,                 -- JSON array: the cluster idx of each cell
    cell_workload TEXT NOT NULL                -- JSON array: the workload_id each cell serves ("" = any)
);
)SQL"},
    {3, "phase 2: run owners and errors, splits, eval variants, adapter base identity and loss curve", R"SQL(
-- A run row is written 'running' by store::run_scope and marked ok / failed / interrupted when the
-- scope ends. A process killed outright cannot mark it: its owner (pid, host, process start) tells
-- a later reader that nobody is running it any more (shown 'interrupted', never used as input).
ALTER TABLE runs ADD COLUMN error TEXT;             -- why it failed or stopped; NULL when ok/running
ALTER TABLE runs ADD COLUMN pid INTEGER;            -- owner process while running
ALTER TABLE runs ADD COLUMN host TEXT;              -- owner's host name
ALTER TABLE runs ADD COLUMN owner_start TEXT;       -- owner's boot id and start time: a reused pid is not the owner
ALTER TABLE runs ADD COLUMN device TEXT NOT NULL DEFAULT '{}';  -- device, dtype and the probe behind it (JSON)
CREATE INDEX runs_command_status ON runs(command, status, id);

-- finetune/eval: which of a clustering run's calls train, validate and test, for one seed.
CREATE TABLE splits (
    cluster_run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    seed        INTEGER NOT NULL,
    call_id     INTEGER NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
    split       TEXT NOT NULL CHECK (split IN ('train', 'val', 'test')),
    PRIMARY KEY (cluster_run, seed, call_id)
) WITHOUT ROWID;

-- eval: the same held-out call answered by the base model, the base model with in-context
-- examples, and the fine-tuned (customized) one.
ALTER TABLE eval_results ADD COLUMN variant TEXT NOT NULL DEFAULT 'customized'
    CHECK (variant IN ('base', 'icl', 'customized'));
ALTER TABLE eval_results ADD COLUMN model TEXT NOT NULL DEFAULT '';  -- the model file it ran (base path)
CREATE INDEX eval_results_variant ON eval_results(run_id, variant);

-- finetune: adapters.base_model is the base model's path; its sha256 says which file it was.
ALTER TABLE adapters ADD COLUMN base_model_sha256 TEXT;
ALTER TABLE adapters ADD COLUMN loss_curve TEXT NOT NULL DEFAULT '[]';  -- [{step, train_loss, val_loss?}] (JSON)
)SQL"},
    {4, "eval_results.cluster_id: which cluster a held-out call was scored for", R"SQL(
-- eval: the cluster of the clustering run the call was evaluated in (a call can belong to clusters of
-- several runs), so per-cluster results read straight from the table.
ALTER TABLE eval_results ADD COLUMN cluster_id INTEGER REFERENCES clusters(id) ON DELETE CASCADE;
CREATE INDEX eval_results_cluster ON eval_results(cluster_id, variant);
)SQL"},
    {5, "pipeline_steps: what `slmctl run` did per stage, keyed by a content hash of the stage's inputs", R"SQL(
-- S6: one row per stage (per cluster for finetune) of a `run`: the key is a hash of everything the
-- stage reads (input files' bytes, the calls, the clustering run, the train split, the base model's
-- sha256) and its params, so a later `run` skips a stage whose key an 'ok' stage run already has,
-- and a killed `run` resumes after its last finished stage.
CREATE TABLE pipeline_steps (
    id          INTEGER PRIMARY KEY,
    run_id      INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,   -- the `run`
    stage       TEXT NOT NULL,                 -- collect, cluster, select, finetune, eval
    cluster_key TEXT NOT NULL DEFAULT '',      -- finetune: the cluster's identity in its cycle
    key         TEXT NOT NULL,                 -- content hash of inputs + params
    stage_run   INTEGER REFERENCES runs(id) ON DELETE CASCADE,            -- the stage's own run
    result      TEXT NOT NULL DEFAULT '{}',    -- what later stages need (JSON)
    created     TEXT NOT NULL
);
CREATE INDEX pipeline_steps_key ON pipeline_steps(stage, key);
)SQL"},
    {6, "calls.response_format (the request's structured-output request); eval_results.judge_score", R"SQL(
-- S1: the request's response_format object as sent ({"type":"json_schema","json_schema":{...}} or
-- {"type":"json_object"}), keys sorted and strings scrubbed like the tools; NULL when the request had
-- none or asked for plain text. eval checks a JSON answer against its schema. Calls stored before
-- this migration read NULL (collect them into a new database to get it).
ALTER TABLE calls ADD COLUMN response_format TEXT;

-- eval --judge: an LLM judge's score of the answer, normalised to 0..1 (NULL: not judged, or the
-- judge gave no readable score; details says which and keeps the reply).
ALTER TABLE eval_results ADD COLUMN judge_score REAL;
)SQL"},
    };
    return list;
}
// clang-format on

const std::vector<std::string>& pipeline_tables() {
    static const std::vector<std::string> t = {"runs",     "calls",      "quarantine",  "clusters",
                                               "cluster_members", "cluster_models", "splits", "selections", "adapters", "eval_results", "pipeline_steps"};
    return t;
}

}  // namespace slm::store
