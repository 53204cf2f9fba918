// doctest's main for every test binary; also keeps library logging quiet unless asked.
// Test helpers shared across modules live in tests/test-util.h.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdlib>

#include "common/common.h"

int main(int argc, char** argv) {
    if (!std::getenv("SLMCTL_TEST_VERBOSE")) slm::set_verbosity(slm::verbosity::quiet);
    doctest::Context ctx(argc, argv);
    return ctx.run();
}
