// Assigning new calls to a stored run's clusters: the run's own embedder (reloaded from
// cluster_models) and its k-means cells, searched with FAISS flat inner-product indexes. Used by
// `slmctl route`.
#include <unordered_map>

#include "clustering/clustering.h"
#include "common/common.h"
#include "store/stages.h"

namespace slm::clustering {

struct assigner::impl {
    std::unique_ptr<embedder> emb;
    std::vector<float> cells;                   ///< cells * dim
    std::vector<int> owner;                     ///< cell -> cluster idx
    std::vector<std::string> cell_workload;     ///< cell -> workload it serves ("" = any)
    std::unordered_map<int, int64_t> row_of;    ///< cluster idx -> clusters.id
    text_params text;
    double noise_similarity = -1;
};

assigner::assigner() : p_(std::make_unique<impl>()) {}
assigner::~assigner() = default;
assigner::assigner(assigner&&) noexcept = default;
assigner& assigner::operator=(assigner&&) noexcept = default;

int assigner::k() const { return static_cast<int>(p_->row_of.size()); }

assigner assigner::load(store::db& d, int64_t run_id) {
    auto run = store::require_ok_run(d, run_id, "cluster");
    assigner a;
    auto& im = *a.p_;
    {
        auto j = nlohmann::json::parse(run.params, nullptr, false);
        if (j.is_object()) {
            im.noise_similarity = j.value("noise_similarity", -1.0);
            if (j.contains("text")) {
                im.text.include_system = j["text"].value("include_system", false);
                im.text.max_chars = j["text"].value("max_chars", im.text.max_chars);
            }
        }
    }
    auto model = store::get_cluster_model(d, run_id);
    if (!model)
        throw user_error(fmt::format("clustering run {} has no stored embedder", run_id),
                         "run `slmctl cluster` again with this slmctl");
    im.emb = load_embedder(model->embedder, model->blob);
    const int dim = im.emb->dim();
    {
        auto own = nlohmann::json::parse(model->cell_owner, nullptr, false);
        auto wl = nlohmann::json::parse(model->cell_workload, nullptr, false);
        if (own.is_array() && wl.is_array() && own.size() == wl.size())
            for (size_t i = 0; i < own.size(); ++i) {
                im.owner.push_back(own[i].get<int>());
                im.cell_workload.push_back(wl[i].get<std::string>());
            }
        if (im.owner.empty() || model->cells.size() != static_cast<size_t>(dim) * im.owner.size())
            throw user_error(fmt::format("clustering run {} has {} bytes of cells for {} cells of dim {}", run_id,
                                         model->cells.size() * sizeof(float), im.owner.size(), dim),
                             "run `slmctl cluster` again");
        im.cells = std::move(model->cells);
    }
    for (const auto& c : store::clusters_of_run(d, run_id))
        if (c.idx >= 0) im.row_of[c.idx] = c.id;
    for (int o : im.owner)
        if (!im.row_of.count(o))
            throw user_error(fmt::format("clustering run {}: a cell belongs to cluster {}, which is not stored", run_id, o),
                             "run `slmctl cluster` again");
    return a;
}

std::vector<assignment> assigner::assign(const std::vector<call_text>& calls) const {
    const auto& im = *p_;
    const int dim = im.emb->dim();
    std::vector<std::string> docs(calls.size());
    std::vector<std::string_view> views(calls.size());
    for (size_t i = 0; i < calls.size(); ++i) {
        docs[i] = document(calls[i], im.text);
        views[i] = docs[i];
    }
    std::vector<float> x(calls.size() * dim);
    im.emb->embed(views, x.data());
    // groups as the run made them: a call of a known node looks among that node's cells; a call of
    // a node the run never saw (or a run that ignored nodes) looks among all cells
    std::unordered_map<std::string, int> gid;
    std::vector<int> cell_group(im.owner.size());
    for (size_t c = 0; c < im.owner.size(); ++c)
        cell_group[c] = gid.try_emplace(im.cell_workload[c], static_cast<int>(gid.size())).first->second;
    std::vector<int> group(calls.size(), -1);
    if (!(gid.size() == 1 && gid.count("")))  // "" alone: the run did not group by node
        for (size_t i = 0; i < calls.size(); ++i) {
            auto it = gid.find(calls[i].workload_id);
            if (it != gid.end() && !calls[i].workload_id.empty()) group[i] = it->second;
        }
    std::vector<int> cell;
    std::vector<float> sim;
    assign_within_groups(x.data(), dim, group, im.cells, cell_group, cell, sim);
    std::vector<assignment> out(calls.size());
    for (size_t i = 0; i < calls.size(); ++i) {
        out[i].similarity = sim[i];
        if (cell[i] >= 0 && sim[i] >= im.noise_similarity) {
            out[i].cluster = im.owner[cell[i]];
            out[i].cluster_id = im.row_of.at(out[i].cluster);
        }
    }
    return out;
}

}  // namespace slm::clustering
