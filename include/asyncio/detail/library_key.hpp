// The passkey that guards the public members meant for the library only.
//
// Some members must be public because other parts of the library, in other
// classes and in free function templates, call them: adopting a raw state,
// moving a future's value out, taking a coroutine's frame. Friendship would
// have to name every such caller. Instead each of these members takes a
// detail::LibraryKey as its first argument:
//
//     future.value(detail::library_key, detail::ValueReaders::sole);
//
// The key's default constructor is explicit, so `{}` does not make one: a
// caller has to spell out asyncio::detail, which user code has no business
// naming. The key costs nothing at run time (an empty argument).
#pragma once

namespace asyncio::detail {

/// Passkey of the members documented as "library use".
struct LibraryKey {
    explicit LibraryKey() = default;
};

/// The key the library passes.
inline constexpr LibraryKey library_key{};

}  // namespace asyncio::detail
