// From vectors to clusters: k-means cells per agent node, average-linkage merging of the cells
// within a node, the --k auto choice by silhouette, dissolving small clusters, marking noise.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>
#include <optional>
#include <random>

#include "clustering/clustering.h"
#include "clustering/sampling.h"
#include "common/common.h"

// BLAS (the library faiss links): C = alpha op(A) op(B) + beta C, column-major.
extern "C" int sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k,
                      const float* alpha, const float* a, const int* lda, const float* b, const int* ldb,
                      const float* beta, float* c, const int* ldc);

namespace slm::clustering {

namespace {

constexpr double no_link = -std::numeric_limits<double>::infinity();

/// Points of each group, in order; the last list holds the points of no group (-1).
std::vector<std::vector<size_t>> members_of(const std::vector<int>& group, int n_groups) {
    std::vector<std::vector<size_t>> out(n_groups + 1);
    for (size_t i = 0; i < group.size(); ++i) out[group[i] >= 0 ? group[i] : n_groups].push_back(i);
    return out;
}

/// Mean cosine silhouette of the probe calls when cells are grouped by `map` into k clusters:
/// a(i) = 1 - (x_i.S_C - x_i.x_i) / (|C| - 1), b(i) = min over C' != C of 1 - x_i.S_C' / |C'|, with
/// x_i.S_C summed from the per-cell products (every call of the run counts, not just the probes).
double level_silhouette(const std::vector<int>& map, int k, const std::vector<size_t>& probe,
                        const std::vector<int>& cell, const std::vector<float>& ip, const std::vector<float>& self,
                        const std::vector<double>& cell_count) {
    const int m = static_cast<int>(map.size());
    std::vector<double> size(k, 0.0);
    for (int c = 0; c < m; ++c) size[map[c]] += cell_count[c];
    std::vector<double> per(probe.size(), 0.0);
    std::vector<char> counted(probe.size(), 0);
#pragma omp parallel
    {
        std::vector<double> t(k);
#pragma omp for schedule(static)
        for (int64_t i = 0; i < static_cast<int64_t>(probe.size()); ++i) {
            int own_cell = cell[probe[i]];
            if (own_cell < 0) continue;
            counted[i] = 1;
            int own = map[own_cell];
            if (size[own] < 2) continue;
            std::fill(t.begin(), t.end(), 0.0);
            const float* row = ip.data() + static_cast<size_t>(i) * m;
            for (int c = 0; c < m; ++c) t[map[c]] += row[c];
            double a = 1.0 - (t[own] - self[i]) / (size[own] - 1);
            double b = 1e300;
            for (int c = 0; c < k; ++c)
                if (c != own && size[c] > 0) b = std::min(b, 1.0 - t[c] / size[c]);
            double den = std::max(a, b);
            per[i] = den > 0 && b < 1e300 ? (b - a) / den : 0.0;
        }
    }
    double total = 0;
    int64_t n = 0;
    for (size_t i = 0; i < probe.size(); ++i)
        if (counted[i]) total += per[i], ++n;
    return n ? total / static_cast<double>(n) : 0.0;
}

}  // namespace

void assign_within_groups(const float* x, int d, const std::vector<int>& group, const std::vector<float>& cells,
                          const std::vector<int>& cell_group, std::vector<int>& cell, std::vector<float>& sim) {
    // one flat inner-product search against every cell (a BLAS product per block of calls), then
    // the best cell of the call's own group: no per-group gathering, few parallel regions
    const size_t n = group.size();
    const int m = static_cast<int>(cell_group.size());
    cell.assign(n, -1);
    sim.assign(n, -1.f);
    if (m == 0 || n == 0) return;
    int n_groups = 0;
    for (int g : group) n_groups = std::max(n_groups, g + 1);
    for (int g : cell_group) n_groups = std::max(n_groups, g + 1);
    std::vector<std::vector<int>> cells_of(n_groups + 1);  // last: every cell (calls of no group)
    for (int c = 0; c < m; ++c) {
        cells_of[cell_group[c]].push_back(c);
        cells_of[n_groups].push_back(c);
    }
    const size_t block = 65536;
    std::vector<float> ip(block * m);
    for (size_t b = 0; b < n; b += block) {
        const int nb = static_cast<int>(std::min(block, n - b));
        // column-major: ip^T (m x nb) = cells (d x m)^T * x^T (d x nb)
        const char tr = 'T', nt = 'N';
        const float one = 1.f, zero = 0.f;
        sgemm_(&tr, &nt, &m, &nb, &d, &one, cells.data(), &d, x + b * d, &d, &zero, ip.data(), &m);
#pragma omp parallel for schedule(static)
        for (int i = 0; i < nb; ++i) {
            const int g = group[b + i];
            const auto& mine = cells_of[g >= 0 ? g : n_groups];
            const float* row = ip.data() + static_cast<size_t>(i) * m;
            int best = -1;
            float bs = -std::numeric_limits<float>::infinity();
            for (int c : mine)
                if (row[c] > bs) bs = row[c], best = c;
            cell[b + i] = best;
            sim[b + i] = best >= 0 ? bs : -1.f;
        }
    }
}

partition cluster_vectors(const float* x, size_t n, int d, const std::vector<int>& group_in, int k_fixed,
                          const cluster_params& p, k_choice* scan) {
    if (n == 0) throw user_error("nothing to cluster");
    std::vector<int> group = group_in;
    int n_groups = 0;
    for (int g : group) n_groups = std::max(n_groups, g + 1);
    if (group.empty() || !p.by_workload || n_groups == 0) group.assign(n, 0), n_groups = 1;
    SLM_ASSERT(group.size() == n, "{} group ids for {} points", group.size(), n);
    // members[n_groups]: calls of no known node; they join the nearest cell of any node
    const auto members = members_of(group, n_groups);

    const int min_size = std::max(1, p.min_cluster_size);
    const int min_cell = std::max(2, min_size / 2);
    const int want = k_fixed > 0 ? k_fixed : p.k_max;
    const int total_cells = std::max(p.cells > 0 ? p.cells : 2 * want, want);

    auto t0 = std::chrono::steady_clock::now();
    auto lap = [&](const char* what) {
        auto t = std::chrono::steady_clock::now();
        log_debug("cluster {}: {:.3f} s", what, std::chrono::duration<double>(t - t0).count());
        t0 = t;
    };

    // 1. k-means cells inside each group, about total_cells in all, in proportion to traffic;
    //    groups in parallel, each single-threaded (deterministic: each has its own seed)
    const size_t known = n - members[n_groups].size();
    std::vector<partition> trained(n_groups);
    kmeans_params kp = p.kmeans;
    kp.device = p.device;
    const bool on_cpu = kp.device == "cpu";  // a GPU takes the groups one after another
#pragma omp parallel for schedule(dynamic, 1) if (n_groups > 1 && on_cpu)
    for (int g = 0; g < n_groups; ++g) {
        const auto& mem = members[g];
        if (mem.empty()) continue;
        size_t by_share = static_cast<size_t>(std::llround(static_cast<double>(total_cells) * mem.size() / known));
        size_t room = std::max<size_t>(1, mem.size() / static_cast<size_t>(min_cell));
        int c_g = static_cast<int>(std::min(room, std::max<size_t>({by_share, 4, 1})));
        // train on a sample of the group (spherical_kmeans subsamples further per centroid)
        std::mt19937_64 rng(p.seed + 0x632be59bd9b4e019ULL * (g + 1));
        size_t m = std::min(mem.size(), static_cast<size_t>(c_g) * std::max(1, p.kmeans.max_points_per_centroid));
        auto pick = detail::sample_indices(mem.size(), m, rng);
        std::vector<float> xs(pick.size() * d);
        for (size_t i = 0; i < pick.size(); ++i)
            std::copy(x + mem[pick[i]] * d, x + (mem[pick[i]] + 1) * d, xs.begin() + i * d);
        std::optional<detail::single_thread_scope> one;
        if (n_groups > 1 && on_cpu) one.emplace();
        trained[g] = spherical_kmeans(xs.data(), pick.size(), d, c_g, kp, p.seed + g);
    }
    std::vector<float> cen;
    std::vector<int> cell_group;
    double objective = 0;
    for (int g = 0; g < n_groups; ++g) {
        objective += trained[g].objective;
        cen.insert(cen.end(), trained[g].centroids.begin(), trained[g].centroids.end());
        cell_group.insert(cell_group.end(), trained[g].k, g);
    }
    int m = static_cast<int>(cell_group.size());
    lap("k-means cells");
    std::vector<int> cell;
    std::vector<float> sim;
    assign_within_groups(x, d, group, cen, cell_group, cell, sim);

    // keeps the cells flagged in `keep` (renumbered in order) and reassigns every point
    auto keep_cells = [&](const std::vector<bool>& keep) {
        std::vector<float> c2;
        std::vector<int> g2;
        for (int c = 0; c < m; ++c)
            if (keep[c]) {
                c2.insert(c2.end(), cen.begin() + static_cast<size_t>(c) * d, cen.begin() + static_cast<size_t>(c + 1) * d);
                g2.push_back(cell_group[c]);
            }
        std::vector<int> renum(m, -1);
        for (int c = 0, next = 0; c < m; ++c)
            if (keep[c]) renum[c] = next++;
        cen = std::move(c2);
        cell_group = std::move(g2);
        m = static_cast<int>(cell_group.size());
        // a call whose nearest cell is kept keeps it (the nearest of a subset that contains it);
        // only the calls of removed cells look again
        std::vector<size_t> orphan;
        for (size_t i = 0; i < n; ++i) {
            if (cell[i] < 0) continue;
            int to = renum[cell[i]];
            if (to >= 0) cell[i] = to;
            else orphan.push_back(i);
        }
        if (orphan.empty()) return;
        std::vector<float> xo(orphan.size() * d);
        std::vector<int> go(orphan.size());
        for (size_t j = 0; j < orphan.size(); ++j) {
            std::copy(x + orphan[j] * d, x + (orphan[j] + 1) * d, xo.begin() + j * d);
            go[j] = group[orphan[j]];
        }
        std::vector<int> co;
        std::vector<float> so;
        assign_within_groups(xo.data(), d, go, cen, cell_group, co, so);
        for (size_t j = 0; j < orphan.size(); ++j) cell[orphan[j]] = co[j], sim[orphan[j]] = so[j];
    };
    auto cell_sizes = [&]() {
        std::vector<int64_t> s(m, 0);
        for (int c : cell)
            if (c >= 0) ++s[c];
        return s;
    };

    lap("first assignment");
    // 2. dissolve cells too small to be part of a cluster (their calls join the nearest cell of
    //    their node; a node whose cells are all tiny keeps its largest)
    for (int round = 0; round < 8; ++round) {
        auto size = cell_sizes();
        std::vector<bool> keep(m);
        std::vector<int> largest(n_groups, -1);
        for (int c = 0; c < m; ++c) {
            keep[c] = size[c] >= min_cell;
            int& l = largest[cell_group[c]];
            if (l < 0 || size[c] > size[l]) l = c;
        }
        for (int g = 0; g < n_groups; ++g) {
            bool any = false;
            for (int c = 0; c < m; ++c) any |= keep[c] && cell_group[c] == g;
            if (!any && largest[g] >= 0 && size[largest[g]] > 0) keep[largest[g]] = true;
        }
        if (std::all_of(keep.begin(), keep.end(), [](bool b) { return b; })) break;
        keep_cells(keep);
    }

    lap("dissolving small cells");
    // 3. average-linkage merging within a group: link(A, B) = mean over a in A, b in B of a.b
    //    = S_A.S_B / (|A| |B|) with S the sum of the members' vectors
    auto size = cell_sizes();
    std::vector<double> sum(static_cast<size_t>(m) * d, 0.0);
    for (size_t i = 0; i < n; ++i)
        if (cell[i] >= 0)
            for (int t = 0; t < d; ++t) sum[static_cast<size_t>(cell[i]) * d + t] += x[i * d + t];
    std::vector<double> cnt(size.begin(), size.end());
    for (auto& c : cnt) c = std::max(c, 1.0);
    auto linkage = [&](int a, int b) {
        if (cell_group[a] != cell_group[b]) return no_link;
        double s = 0;
        for (int t = 0; t < d; ++t) s += sum[static_cast<size_t>(a) * d + t] * sum[static_cast<size_t>(b) * d + t];
        return s / (cnt[a] * cnt[b]);
    };
    // for the silhouette of --k auto: a sample of calls and their inner products with every cell
    // sum, so that any union of cells gives x.S_C by adding up (n_s * cells per level, not n_s * k * d)
    std::vector<size_t> probe;
    std::vector<float> probe_ip, probe_self;
    if (k_fixed <= 0) {
        std::mt19937_64 rng(p.seed ^ 0xa0761d6478bd642fULL);
        probe = detail::sample_indices(n, std::min<size_t>(n, std::max(100, p.auto_sample)), rng);
        std::vector<float> sumf(sum.begin(), sum.end());
        probe_ip.assign(probe.size() * m, 0.f);
        probe_self.assign(probe.size(), 0.f);
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < static_cast<int64_t>(probe.size()); ++i) {
            const float* xi = x + probe[i] * d;
            for (int c = 0; c < m; ++c) probe_ip[i * m + c] = detail::dot(xi, sumf.data() + static_cast<size_t>(c) * d, d);
            probe_self[i] = detail::dot(xi, xi, d);
        }
    }
    const std::vector<double> cell_count = cnt;

    lap("cell sums and probe products");
    std::vector<double> link(static_cast<size_t>(m) * m, no_link);
    for (int a = 0; a < m; ++a)
        for (int b = a + 1; b < m; ++b) link[static_cast<size_t>(a) * m + b] = linkage(a, b);
    std::vector<int> rep(m);  // each cell's current cluster representative
    std::iota(rep.begin(), rep.end(), 0);
    std::vector<bool> active(m, true);
    // levels[k] = cell -> cluster (0..k-1) while k clusters remain
    std::vector<std::vector<int>> levels(m + 1);
    auto snapshot = [&](int k) {
        std::vector<int> ids(m, -1), map(m);
        int next = 0;
        for (int c = 0; c < m; ++c) {
            if (ids[rep[c]] < 0) ids[rep[c]] = next++;
            map[c] = ids[rep[c]];
        }
        SLM_ASSERT(next == k, "merge level has {} groups, expected {}", next, k);
        levels[k] = std::move(map);
    };
    snapshot(m);
    int k_floor = m;  // fewest clusters reachable (one per group)
    for (int k = m; k > 1; --k) {
        int ba = -1, bb = -1;
        double best = no_link;
        for (int a = 0; a < m; ++a) {
            if (!active[a]) continue;
            for (int b = a + 1; b < m; ++b)
                if (active[b] && link[static_cast<size_t>(a) * m + b] > best)
                    best = link[static_cast<size_t>(a) * m + b], ba = a, bb = b;
        }
        if (ba < 0) break;  // only cross-group pairs left
        log_debug("merge to k={:3d}: linkage {:.4f} (sizes {:.0f} + {:.0f})", k - 1, best, cnt[ba], cnt[bb]);
        for (int t = 0; t < d; ++t) sum[static_cast<size_t>(ba) * d + t] += sum[static_cast<size_t>(bb) * d + t];
        cnt[ba] += cnt[bb];
        active[bb] = false;
        for (int c = 0; c < m; ++c)
            if (rep[c] == bb) rep[c] = ba;
        for (int o = 0; o < m; ++o)
            if (active[o] && o != ba) link[static_cast<size_t>(std::min(o, ba)) * m + std::max(o, ba)] = linkage(o, ba);
        snapshot(k - 1);
        k_floor = k - 1;
    }

    lap("merging");
    // 4. k: fixed, or the best silhouette on a sample
    int k = 0;
    if (k_fixed > 0) {
        k = std::clamp(k_fixed, k_floor, m);
        if (k != k_fixed)
            log_warn("asked for {} clusters, made {}: {} agent nodes, cells of at least {} calls", k_fixed, k,
                     k_floor, min_cell);
    } else {
        const int k_lo = std::clamp(std::max(2, p.k_min), k_floor, m), k_hi = std::clamp(p.k_max, k_lo, m);
        std::vector<std::pair<int, double>> sil;
        double best = -2;
        for (int kk = k_lo; kk <= k_hi; ++kk) {
            double s = kk >= 2 ? level_silhouette(levels[kk], kk, probe, cell, probe_ip, probe_self, cell_count) : 0.0;
            sil.emplace_back(kk, s);
            best = std::max(best, s);
            log_debug("k={:3d}  silhouette {:.4f}", kk, s);
        }
        // the fewest clusters within `silhouette_tolerance` of the best: past the knee the curve is
        // a plateau whose wiggles are sampling noise, and each extra split costs a cluster
        k = k_lo;
        for (auto& [kk, s] : sil)
            if (s >= best - p.silhouette_tolerance) {
                k = kk;
                break;
            }
        if (scan) scan->k = k, scan->silhouettes = std::move(sil);
    }
    std::vector<int> owner = levels[k];

    lap("choosing k");
    // 5. dissolve clusters below min_size: their cells go, their calls join the nearest kept
    //    cell of their node (noise when the node has none left)
    for (int round = 0; round < 8; ++round) {
        std::vector<int64_t> csize(k, 0);
        for (size_t i = 0; i < n; ++i)
            if (cell[i] >= 0) ++csize[owner[cell[i]]];
        std::vector<bool> keep_cluster(k);
        int live = 0;
        for (int c = 0; c < k; ++c) live += (keep_cluster[c] = csize[c] >= min_size);
        if (live == k) break;
        if (live == 0) keep_cluster[std::max_element(csize.begin(), csize.end()) - csize.begin()] = true, live = 1;
        std::vector<int> renum(k, -1), new_owner;
        int next = 0;
        for (int c = 0; c < k; ++c)
            if (keep_cluster[c]) renum[c] = next++;
        std::vector<bool> keep(m);
        for (int c = 0; c < m; ++c)
            if ((keep[c] = keep_cluster[owner[c]])) new_owner.push_back(renum[owner[c]]);
        owner = std::move(new_owner);
        k = live;
        keep_cells(keep);
    }

    lap("dissolving small clusters");
    // 6. number clusters by decreasing size; noise: no cell, or below noise_similarity
    auto is_noise = [&](size_t i) { return cell[i] < 0 || sim[i] < p.noise_similarity; };
    std::vector<int64_t> csize(k, 0);
    for (size_t i = 0; i < n; ++i)
        if (!is_noise(i)) ++csize[owner[cell[i]]];
    std::vector<int> order(k);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return csize[a] > csize[b]; });
    std::vector<int> rank(k);
    for (int r = 0; r < k; ++r) rank[order[r]] = r;
    partition out;
    out.k = k;
    out.dim = d;
    out.centroids = std::move(cen);
    out.cell_group = std::move(cell_group);
    out.owner.resize(m);
    for (int c = 0; c < m; ++c) out.owner[c] = rank[owner[c]];
    out.labels.resize(n);
    for (size_t i = 0; i < n; ++i) out.labels[i] = is_noise(i) ? -1 : out.owner[cell[i]];
    out.similarity = std::move(sim);
    out.objective = objective;
    return out;
}

}  // namespace slm::clustering
