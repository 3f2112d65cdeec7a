// contextvars (PEP 567): copy-on-write context mappings.
#include "asyncio/contextvars.hpp"

#include <algorithm>

#include "thread_state.hpp"

namespace asyncio {
namespace detail {

const std::shared_ptr<const void>* ContextData::find(std::uint64_t id) const noexcept {
    auto it =
        std::lower_bound(entries.begin(), entries.end(), id,
                         [](const auto& entry, std::uint64_t key) { return entry.first < key; });
    if (it == entries.end() || it->first != id) return nullptr;
    return &it->second;
}

ContextDataRef ContextDataRef::with(std::uint64_t id, std::shared_ptr<const void> value) const {
    auto* copy = new ContextData;
    if (data_ != nullptr) copy->entries = data_->entries;
    auto& entries = copy->entries;
    auto it =
        std::lower_bound(entries.begin(), entries.end(), id,
                         [](const auto& entry, std::uint64_t key) { return entry.first < key; });
    if (it != entries.end() && it->first == id) {
        if (value) {
            it->second = std::move(value);
        } else {
            entries.erase(it);
        }
    } else if (value) {
        entries.insert(it, {id, std::move(value)});
    }
    if (entries.empty()) {
        delete copy;
        return ContextDataRef();
    }
    return ContextDataRef(copy);
}

ASYNCIO_DEFINE_PER_THREAD(ContextState*, current_context_state);

ContextState& current_context() {
    if (current_context_state() != nullptr) return *current_context_state();
    return thread_state<ContextState>();
}

std::uint64_t next_context_id() noexcept {
    static std::atomic<std::uint64_t> next{1};
    return next.fetch_add(1, std::memory_order_relaxed);
}

std::uint64_t next_context_var_id() noexcept {
    static std::atomic<std::uint64_t> next{1};
    return next.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace detail

Context::Context() : state_(new detail::ContextState) {}

Context::Context(const Context& other) noexcept : state_(other.state_) {
    state_->refs.fetch_add(1, std::memory_order_relaxed);
}

Context::~Context() {
    if (state_ != nullptr && state_->refs.fetch_sub(1, std::memory_order_acq_rel) == 1)
        delete state_;
}

Context Context::copy() const {
    Context out;
    out.state_->data = state_->data;
    return out;
}

std::size_t Context::size() const noexcept {
    const detail::ContextData* data = state_->data.get();
    return data != nullptr ? data->entries.size() : 0;
}

Context copy_context() {
    Context out;
    out.state()->data = detail::current_context().data;
    return out;
}

}  // namespace asyncio
