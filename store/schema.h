// Internal to slm_store: the ordered list of schema migrations and the pipeline's table names.
// Other modules see only store.h.
#pragma once
#include <string>
#include <vector>

namespace slm::store {

struct migration {
    int version;              ///< user_version after it ran (1, 2, ...)
    const char* description;
    const char* sql;
};

const std::vector<migration>& migrations();
const std::vector<std::string>& pipeline_tables();

}  // namespace slm::store
