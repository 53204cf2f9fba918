// mapped_file: open, fstat, mmap (PROT_READ, MAP_PRIVATE), close the descriptor at once (the
// mapping keeps the file alive), munmap on destruction.
#include "common/mmap-file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "common/common.h"

namespace slm {

mapped_file::mapped_file(const std::string& path, std::string_view open_hint) : path_(path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw user_error(fmt::format("cannot open {}: {}", path, std::strerror(errno)), std::string(open_hint));
    struct stat st{};
    if (::fstat(fd, &st) != 0) {
        const int err = errno;
        ::close(fd);
        throw user_error(fmt::format("cannot stat {}: {}", path, std::strerror(err)), std::string(open_hint));
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        throw user_error(fmt::format("{} is not a regular file", path), std::string(open_hint));
    }
    size_ = static_cast<size_t>(st.st_size);
    if (size_ > 0) {
        void* m = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            const int err = errno;
            ::close(fd);
            throw user_error(fmt::format("cannot map {} ({}): {}", path, human_bytes(size_), std::strerror(err)),
                             "check free memory/address space and that the file is readable");
        }
        map_ = m;
    }
    ::close(fd);
}

mapped_file::~mapped_file() { reset(); }

void mapped_file::reset() noexcept {
    if (map_) ::munmap(map_, size_);
    map_ = nullptr;
    size_ = 0;
}

mapped_file::mapped_file(mapped_file&& o) noexcept
    : path_(std::move(o.path_)), map_(std::exchange(o.map_, nullptr)), size_(std::exchange(o.size_, 0)) {}

mapped_file& mapped_file::operator=(mapped_file&& o) noexcept {
    if (this != &o) {
        reset();
        path_ = std::move(o.path_);
        map_ = std::exchange(o.map_, nullptr);
        size_ = std::exchange(o.size_, 0);
    }
    return *this;
}

}  // namespace slm
