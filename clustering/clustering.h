// S3 clustering: embeds the stored calls' task text, groups them into recurring tasks with FAISS
// spherical k-means, describes each cluster (label, stats, SLM suitability) and assigns new calls.
// The only public header of slm_clustering.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace slm::store {
class db;
}

namespace slm::clustering {

// ---- what is embedded -----------------------------------------------------------------------

/// The text of one call that clustering embeds. collect writes `task_text` (last user turn,
/// tool names offered, response shape); the agent node's system prompt is kept apart because a
/// prompt shared by every call of a node would otherwise dominate the vector (see bench/cluster).
struct call_text {
    std::string task_text;      ///< calls.task_text
    std::string workload_id;    ///< the agent node; assign() looks among that node's clusters
    std::string system_prompt;  ///< first system message; used only when text_params::include_system
};

struct text_params {
    bool include_system = false;  ///< also embed the system prompt (off: it names the node, not the task)
    int max_chars = 4000;         ///< task text beyond this many bytes is not embedded (cost bound)
};

/// The document embedded for one call under `p` (system prompt first when asked for).
std::string document(const call_text& c, const text_params& p);

// ---- embedders --------------------------------------------------------------------------------

/// Hashed word + character n-gram TF-IDF, sketched and reduced with FAISS PCA.
///   x   = [sqrt(t(1-a)) w/|w| ; sqrt(t a) c/|c| ; sqrt(o) o/|o| ; sqrt(r) r/|r|]
///         w, c: (1 + ln tf) * idf over the text's word / char n-grams; o: the offered tool names;
///         r: the response shape lines; t = 1 - o - r (shares renormalised over present blocks)
///   s   = S x                                 S: signed count-sketch to sketch_dim (a random projection)
///   y   = P (s - mean)                        P: faiss::PCAMatrix, sketch_dim -> dim
///   out = y / |y|
/// S and P are linear, so P S is folded into one (feature -> dim) lookup: sparse input costs nnz*dim.
struct tfidf_params {
    int hash_bits = 20;         ///< 2^bits hashed feature buckets (idf table size)
    int word_ngram_max = 2;     ///< word n-grams 1..N
    int char_ngram_min = 4;     ///< character n-grams inside words (padded with spaces), from
    int char_ngram_max = 4;     ///< ... to this length (4..4: 3..5 costs 2x the time for no gain)
    float char_weight = 0.3f;   ///< a: share of the char n-gram block in the text's squared norm
    float tools_weight = 0.05f;  ///< share of the "tools:" line (offered tool names) in the squared norm
    float shape_weight = 0.3f;  ///< share of the "after:"/"response:" lines (response shape)
    int min_df = 2;             ///< features seen in fewer documents are ignored
    int idf_sample = 262144;    ///< documents the document frequencies are counted on (0: all)
    int sketch_dim = 512;       ///< count-sketch width, the PCA input dimension
    int dim = 256;              ///< PCA output dimension (the embedding)
    int pca_sample = 16384;     ///< documents used to train the PCA
};

/// Turns documents into L2-normalised float vectors of dim() components.
class embedder {
public:
    virtual ~embedder() = default;
    /// "tfidf", "minilm", "model:PATH".
    virtual std::string name() const = 0;
    virtual int dim() const = 0;
    /// Writes n * dim() floats to `out` (row-major, each row of norm 1 or all zero).
    virtual void embed(const std::vector<std::string_view>& docs, float* out) const = 0;
    /// Parameters as resolved (stored in the run's params).
    virtual nlohmann::json params() const = 0;
    /// Everything needed to embed a new call the same way (stored in cluster_models.blob).
    virtual std::vector<uint8_t> save() const = 0;
};

/// Fits the hashed TF-IDF embedder on a corpus (idf from it, or from idf_sample of its documents;
/// PCA on pca_sample of them) and writes the corpus' embeddings (n * dim floats) when asked.
std::unique_ptr<embedder> fit_tfidf(const std::vector<std::string_view>& docs, const tfidf_params& p,
                                    uint64_t seed, std::vector<float>* corpus_vectors);

/// Loads an embedder saved by embedder::save() (the name says which kind); a pretrained one runs
/// on `device`.
std::unique_ptr<embedder> load_embedder(const std::string& name, const std::vector<uint8_t>& blob,
                                        const std::string& device = "cpu");

/// The pretrained embedder a `--embedder` value names, its model on `device` ("cpu", "cuda",
/// "cuda:N"; user_error when CUDA is asked for and absent); usage_error for unknown names and for
/// a model path that cannot be loaded (user_error from model/).
std::unique_ptr<embedder> make_pretrained_embedder(const std::string& spec, const std::string& device = "cpu");

// ---- k-means ----------------------------------------------------------------------------------

struct kmeans_params {
    int niter = 25;                     ///< Lloyd iterations per restart
    int nredo = 4;                      ///< restarts from different k-means++ seeds; best objective kept
    int max_points_per_centroid = 256;  ///< training subsample per centroid (then all points assigned)
    std::string device = "cpu";         ///< "cpu": FAISS; "cuda", "cuda:N": the libtorch twin on that GPU
};

struct partition {
    int k = 0;                      ///< clusters
    int dim = 0;
    std::vector<float> centroids;   ///< cells * dim, unit norm: the Voronoi cells points are assigned to
    std::vector<int> owner;         ///< per cell, its cluster 0..k-1 (the identity for plain k-means)
    std::vector<int> cell_group;    ///< per cell, the group (agent node) its calls come from
    std::vector<int> labels;        ///< per point, its cluster (-1: noise)
    std::vector<float> similarity;  ///< per point, cosine to its nearest cell centroid
    double objective = 0;           ///< k-means: sum of cosines on the training sample (higher is better)
    int cells() const { return static_cast<int>(owner.size()); }
};

/// Spherical k-means with FAISS (IndexFlatIP, normalised centroids), k-means++ seeding,
/// `nredo` restarts; deterministic for a given seed and thread count. x: n * d unit vectors.
/// With p.device other than "cpu" it runs spherical_kmeans_torch there (through the tensor plugin).
partition spherical_kmeans(const float* x, size_t n, int d, int k, const kmeans_params& p, uint64_t seed);

/// The same k-means in libtorch on p.device ("cpu", "cuda", "cuda:N"), step for step: the same
/// training sample and k-means++ seeds (the same generator draws), then faiss::Clustering's Lloyd
/// rounds (assign by inner product, means, empty clusters split off a large one as faiss does,
/// renormalise), restarts, and the final assignment of all n points, all on the device. Inputs are
/// copied to the device once; the host reads one scalar per seed and the cluster sizes once per
/// round (splitting needs them). Objectives match FAISS up to float summation order. Defined in the
/// tensor half (clustering/kmeans-torch.cpp): callable from the plugin and the tests, not from slmctl.
partition spherical_kmeans_torch(const float* x, size_t n, int d, int k, const kmeans_params& p, uint64_t seed);

/// Nearest centroid by inner product for each of n vectors (FAISS flat IP index).
void nearest_centroid(const float* centroids, int k, int d, const float* x, size_t n, int* labels,
                      float* similarity);

// ---- quality metrics --------------------------------------------------------------------------

/// Normalised mutual information, arithmetic normalisation (sklearn's default). Labels are any ints.
double nmi(const std::vector<int>& truth, const std::vector<int>& pred);
/// Adjusted Rand index (Hubert & Arabie).
double ari(const std::vector<int>& truth, const std::vector<int>& pred);
/// Mean silhouette with cosine distance (1 - x.y) over unit vectors; points labelled < 0 ignored.
double silhouette(const float* x, size_t n, int d, const std::vector<int>& labels);

// ---- the clustering run -----------------------------------------------------------------------

struct cluster_params {
    std::string k = "auto";        ///< "auto" or a number of clusters
    int cells = 0;                 ///< k-means cells merged into clusters (0: 2 * k_max, or 2 * k)
    int k_min = 2;                 ///< --k auto tries k in [k_min, k_max]
    int k_max = 40;                ///< ... (clipped to the number of cells that survive)
    std::string embedder = "tfidf";///< tfidf | minilm | model:PATH
    std::string workload;          ///< only calls of this workload_id (empty: all)
    bool by_workload = true;       ///< never merge calls of different workloads (agent nodes)
    uint64_t seed = 1234;          ///< k-means seeding, samples, PCA sample
    std::string device = "cpu";    ///< where the torch embedders and k-means run (--device; not stored in params)
    int auto_sample = 20000;       ///< --k auto: calls the silhouette is computed on
    double silhouette_tolerance = 0.01;  ///< --k auto: fewest clusters within this of the best silhouette
    int min_cluster_size = 0;      ///< smaller clusters are dissolved (0: max(5, 0.2% of the calls))
    double noise_similarity = 0.3; ///< calls below this cosine to every cell of their node are noise (-1)
    int stats_sample = 1000;       ///< calls per cluster read for stats and labels
    int repetition_sample = 48;    ///< responses per cluster compared pairwise for repetitiveness
    text_params text;
    tfidf_params tfidf;
    kmeans_params kmeans;
};
nlohmann::json to_json(const cluster_params& p);

/// The silhouette of each k the --k auto scan tried.
struct k_choice {
    int k = 0;
    std::vector<std::pair<int, double>> silhouettes;  ///< (k, mean silhouette) for each k tried
};

/// The clustering proper. Calls of different agent nodes (group: dense workload index per point,
/// -1 for a call of no known node, which may join any node's cluster) never share a cluster: a
/// recurring task is one node's job. Inside each node k-means over-clusters into cells (about
/// `cells` in all, by traffic; more cells than task types, since k-means alone splits heavy task
/// types and merges light ones to balance sizes); cells smaller than half the minimum cluster
/// size are dissolved; the rest are merged within their node by average linkage (mean pairwise
/// cosine between their calls, exact from per-cell sums) down to k clusters: `k_fixed`, or for
/// --k auto the fewest in [k_min, k_max] whose mean silhouette on a sample is within
/// silhouette_tolerance of the best. Clusters below min_cluster_size are dissolved into their
/// neighbours; calls below noise_similarity to every kept cell of their node are noise (-1).
/// Clusters are numbered by decreasing size. A new call's cluster is the owner of its nearest
/// cell of its node.
partition cluster_vectors(const float* x, size_t n, int d, const std::vector<int>& group, int k_fixed,
                          const cluster_params& p, k_choice* scan);

/// For every point, its nearest cell by inner product (a flat search: one BLAS product of the
/// points against all cells) among the cells of its own group, or among all cells for group -1
/// (cell -1 and similarity -1 when its group has no cell). Training and assign() both use it, so a
/// training call is assigned where the run put it.
void assign_within_groups(const float* x, int d, const std::vector<int>& group, const std::vector<float>& cells,
                          const std::vector<int>& cell_group, std::vector<int>& cell, std::vector<float>& sim);

// ---- describing a cluster ---------------------------------------------------------------------

/// One sampled call of a cluster, as the stats see it.
struct call_sample {
    std::string task_text;
    std::string response_text;
    std::string response_tool_calls;  ///< JSON array text, or empty
    std::optional<int64_t> prompt_tokens, completion_tokens;
    std::string workload_id;
};

enum class response_kind { tool_call, json, code, prose };
response_kind classify_response(const std::string& text, const std::string& tool_calls_json);
const char* to_string(response_kind k);

struct cluster_stats {
    int64_t size = 0;
    double share = 0;
    std::vector<std::pair<std::string, double>> top_terms;  ///< c-TF-IDF, best first
    std::vector<std::pair<std::string, double>> workloads;  ///< dominant workloads with shares
    double tool_call_share = 0;
    double kind_share[4] = {0, 0, 0, 0};  ///< indexed by response_kind
    double prompt_tokens_p[3] = {0, 0, 0};      ///< p50, p90, p99
    double completion_tokens_p[3] = {0, 0, 0};  ///< p50, p90, p99
    double repetitiveness = 0;  ///< mean pairwise cosine of responses on a sample (hashed TF-IDF of the
                                ///< tool-call/JSON skeleton, or of the text)
    int sampled = 0;            ///< calls the stats were computed on
};
nlohmann::json to_json(const cluster_stats& s);

struct suitability {
    double score = 0;          ///< in [0,1]
    nlohmann::json reasons;    ///< [{factor, weight, score, evidence}], most influential first
};

/// SLM suitability from the stats:
///   score = 0.35 structured + 0.30 repetitive + 0.25 bounded output + 0.10 bounded context
///   structured = tool_call + json + 0.5 code shares; repetitive = clamp((rep - 0.15) / 0.5);
///   bounded output = 1 at completion p90 <= 128 tokens, 0 at >= 2048, linear in log;
///   bounded context = 1 at prompt p90 <= 2k tokens, 0 at >= 16k, linear in log.
suitability score_suitability(const cluster_stats& s);

/// Computes stats (not size/share/top_terms) for one cluster's sample; `response_idf` from
/// response_idf() over all clusters' samples, so phrasing every response shares counts little.
cluster_stats describe(const std::vector<call_sample>& sample, const std::vector<float>& response_idf,
                       int repetition_sample, uint64_t seed);
/// Hashed idf over the response documents of all samples.
std::vector<float> response_idf(const std::vector<const std::vector<call_sample>*>& samples);

/// c-TF-IDF over word unigrams: per cluster, the terms frequent in it and rare elsewhere.
std::vector<std::vector<std::pair<std::string, double>>> c_tfidf_terms(
    const std::vector<std::vector<std::string_view>>& docs_per_cluster, int top_n);
/// Labels from the top terms, made distinct across clusters.
std::vector<std::string> make_labels(const std::vector<std::vector<std::pair<std::string, double>>>& terms);

// ---- stored runs ------------------------------------------------------------------------------

struct cluster_info {
    int64_t id = 0;  ///< clusters.id
    int idx = 0;     ///< 0..k-1, -1 noise
    std::string label;
    int64_t size = 0;
    double share = 0;
    double suitability = 0;
    nlohmann::json stats;
    nlohmann::json reasons;
};

struct member {
    int64_t call_id = 0;
    std::string response_id, workload_id;
    int cluster = -1;  ///< idx
    double similarity = 0;
};

struct run_result {
    int64_t run_id = 0;
    int k = 0;
    int64_t calls = 0;
    int64_t noise = 0;
    std::string embedder;
    std::vector<cluster_info> clusters;  ///< by idx, noise last
    nlohmann::json summary;
    std::vector<member> members;         ///< by call id; filled by run(), not by load_run()
};

/// Embeds, clusters, describes and stores the calls of `d` (one `runs` row, clusters,
/// cluster_members, cluster_models). user_error when there is nothing to cluster.
run_result run(store::db& d, const cluster_params& p);

/// The latest finished clustering run (0 when none).
int64_t latest_run(store::db& d);
/// A stored run's clusters (user_error if the run is not a finished clustering run).
run_result load_run(store::db& d, int64_t run_id);

std::vector<member> load_members(store::db& d, int64_t run_id);

struct sample_call {
    int64_t call_id = 0;
    std::string workload_id, task_text, response;
    double similarity = 0;
};
/// Up to `n` calls of cluster `idx` of a run, closest to the centroid first.
std::vector<sample_call> cluster_samples(store::db& d, int64_t run_id, int idx, int n);

// ---- assigning new calls ----------------------------------------------------------------------

struct assignment {
    int cluster = -1;       ///< idx of the nearest centroid (-1: below the run's noise threshold)
    int64_t cluster_id = 0; ///< clusters.id (0 when -1)
    float similarity = 0;   ///< cosine to that centroid
};

/// A stored run's embedder and centroids (FAISS flat inner-product index); what `slmctl route` uses.
class assigner {
public:
    static assigner load(store::db& d, int64_t run_id);
    ~assigner();
    assigner(assigner&&) noexcept;
    assigner& operator=(assigner&&) noexcept;

    std::vector<assignment> assign(const std::vector<call_text>& calls) const;
    int k() const;

private:
    assigner();
    struct impl;
    std::unique_ptr<impl> p_;
};

// ---- a new cycle: new calls against a stored run (clustering/extend.cpp) -----------------------

/// When new calls make a stored run stale. Re-cluster when more than `max_unassigned_share` of the
/// new calls fall outside every cell (cosine below the run's noise threshold: outside the radius the
/// run accepted), or when the new calls are more than `max_growth` times the calls the run covered
/// (the traffic changed enough that the cells themselves should move); else the new calls join their
/// nearest cells' clusters and the clusters keep their identity.
struct drift_params {
    double max_unassigned_share = 0.25;
    double max_growth = 1.0;
};

struct drift_report {
    int64_t run_id = 0;                  ///< the stored run the new calls were compared with
    int64_t old_calls = 0, new_calls = 0, unassigned = 0;
    double unassigned_share = 0, growth = 0;
    std::vector<int64_t> new_ids;        ///< the calls the run did not cover, ascending
    std::vector<assignment> assigned;    ///< their assignment, in new_ids order
    std::vector<std::pair<int, int64_t>> new_per_cluster;  ///< (idx, new calls), idx -1 = noise
    bool recluster = false;
    std::string reason;
    nlohmann::json to_json() const;
};

/// Assigns the calls `run_id` did not cover (of its workload, when it had one) with the run's own
/// embedder and cells, and decides by `p` whether the run must be redone.
drift_report measure_drift(store::db& d, int64_t run_id, const drift_params& p);

/// A new clustering run that is `dr.run_id` plus `dr`'s new calls in their assigned clusters: the
/// same clusters (idx, labels, suitability, the stored cluster model), sizes and shares updated; its
/// params say `extends`. The run is recorded as a `cluster` run, so every later stage reads it.
run_result extend_run(store::db& d, const drift_report& dr);

}  // namespace slm::clustering
