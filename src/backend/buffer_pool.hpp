// The buffers a backend provides for read_provided/recv_provided operations
// when the kernel does not pick them itself (readiness backends; io_uring
// without a provided-buffer ring, or with its ring run dry).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace asyncio::detail {

/// A buffer is taken for a read and given back when its op is submitted
/// again or abandoned, so an idle connection holds none. The pool keeps a
/// few idle buffers for the next reads and frees the rest.
class ProvidedBuffers {
  public:
    static constexpr std::size_t kSize = 64 * 1024;
    static constexpr std::size_t kKeepIdle = 64;

    ProvidedBuffers() { idle_.reserve(kKeepIdle); }

    /// A buffer's id; std::bad_alloc if there is no memory for one.
    std::int32_t take() {
        if (!idle_.empty()) {
            const std::int32_t id = idle_.back();
            idle_.pop_back();
            return id;
        }
        // Uninitialized: the pages are touched only as data arrives.
        if (!unused_ids_.empty()) {
            const std::int32_t id = unused_ids_.back();
            buffers_[id].reset(new char[kSize]);
            unused_ids_.pop_back();
            return id;
        }
        buffers_.emplace_back(new char[kSize]);
        unused_ids_.reserve(buffers_.size());  // so that give() never allocates
        return static_cast<std::int32_t>(buffers_.size() - 1);
    }
    char* data(std::int32_t id) noexcept { return buffers_[id].get(); }
    void give(std::int32_t id) noexcept {
        if (idle_.size() < kKeepIdle) {
            idle_.push_back(id);  // never reallocates: reserved for kKeepIdle
            return;
        }
        buffers_[id].reset();
        unused_ids_.push_back(id);
    }

  private:
    std::vector<std::unique_ptr<char[]>> buffers_;
    std::vector<std::int32_t> idle_;
    std::vector<std::int32_t> unused_ids_;
};

}  // namespace asyncio::detail
