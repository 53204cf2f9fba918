// Helpers of the store tests: one value of a query.
#pragma once
#include <doctest/doctest.h>

#include <string>

#include "store/store.h"

namespace slm::test {

/// The integer the query's first row holds in its first column.
inline int64_t scalar(store::db& d, const std::string& sql) {
    auto s = d.prepare(sql);
    REQUIRE(s.step());
    return s.get_int(0);
}

/// The text the query's first row holds in its first column.
inline std::string scalar_text(store::db& d, const std::string& sql) {
    auto s = d.prepare(sql);
    REQUIRE(s.step());
    return s.get_text(0);
}

}  // namespace slm::test
