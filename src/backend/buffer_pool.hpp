// The buffers a backend provides for read_provided/recv_provided operations
// when the kernel does not pick them itself (readiness backends; io_uring
// without a provided-buffer ring, or with its ring run dry).
#pragma once

#include <array>
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

    /// A buffer's id; std::bad_alloc if there is no memory for one.
    std::int32_t take() {
        if (idle_count_ > 0) [[likely]]
            return idle_[--idle_count_];
        return take_new();
    }
    char* data(std::int32_t id) noexcept { return buffers_[id].get(); }
    void give(std::int32_t id) noexcept {
        if (idle_count_ < kKeepIdle) [[likely]] {
            idle_[idle_count_++] = id;
            return;
        }
        free(id);
    }

  private:
    [[gnu::noinline]] std::int32_t take_new() {
        // Uninitialized: the pages are touched only as data arrives.
        if (!unused_ids_.empty()) {
            const std::int32_t id = unused_ids_.back();
            buffers_[id].reset(new char[kSize]);
            unused_ids_.pop_back();
            return id;
        }
        buffers_.emplace_back(new char[kSize]);
        unused_ids_.reserve(buffers_.size());  // so that free() never allocates
        return static_cast<std::int32_t>(buffers_.size() - 1);
    }
    [[gnu::noinline]] void free(std::int32_t id) noexcept {
        buffers_[id].reset();
        unused_ids_.push_back(id);
    }

    std::vector<std::unique_ptr<char[]>> buffers_;
    std::array<std::int32_t, kKeepIdle> idle_;  // most recently used last: warm in cache
    std::size_t idle_count_ = 0;
    std::vector<std::int32_t> unused_ids_;
};

}  // namespace asyncio::detail
