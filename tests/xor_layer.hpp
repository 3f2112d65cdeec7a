// A toy protocol layered over a transport, standing in for TLS in the tests
// of the start_tls machinery (insert_layer, StreamWriter::upgrade_transport).
//
// Its "handshake", in TLS's order: the client sends a one-byte key, the
// server answers with its own. From then on each side XORs what the
// application writes with its own key and what arrives with the peer's.
// It is at once the protocol of the transport below and the transport the
// application uses, as sslproto.SSLProtocol and its _SSLProtocolTransport.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <system_error>

#include "support.hpp"

namespace asyncio_test {

inline std::string xored(std::string_view data, char key) {
    std::string out(data);
    for (char& c : out)
        c = static_cast<char>(c ^ key);
    return out;
}

class XorLayer final : public asyncio::Protocol, public asyncio::Transport {
  public:
    XorLayer(std::shared_ptr<asyncio::BaseProtocol> app, char key, bool server_side,
             asyncio::Future<> ready)
        : app_(std::move(app)), key_(key), server_side_(server_side), ready_(std::move(ready)) {}

    /// What start_tls would be with this layer instead of TLS.
    static asyncio::Coro<asyncio::Transport*> start(asyncio::Transport& below,
                                                    std::shared_ptr<asyncio::BaseProtocol> app,
                                                    char key, bool server_side) {
        asyncio::Future<> ready = asyncio::get_running_loop().create_future();
        auto layer = std::make_shared<XorLayer>(std::move(app), key, server_side, ready);
        co_await asyncio::insert_layer(below, layer, ready);
        co_return layer.get();
    }

    int pause_reading_calls = 0;
    int connection_made_calls = 0;
    std::vector<std::string> events;  // what the layer was told, in order

    // -- the protocol of the transport below --
    void connection_made(asyncio::BaseTransport& below) override {
        ++connection_made_calls;
        events.push_back("connection_made");
        below_ = &dynamic_cast<asyncio::Transport&>(below);
        if (!server_side_) below_->write(std::string(1, key_));
    }
    void data_received(std::string_view data) override {
        events.push_back("data_received");
        if (below_ == nullptr) return;  // before connection_made: the test sees it in `events`
        if (!peer_key_) {
            peer_key_ = data.front();
            data.remove_prefix(1);
            if (server_side_) below_->write(std::string(1, key_));
            if (!ready_.done()) ready_.set_result();
        }
        if (data.empty()) return;
        if (auto* stream = dynamic_cast<asyncio::Protocol*>(app_.get()))
            stream->data_received(xored(data, *peer_key_));
    }
    bool eof_received() override {
        events.push_back("eof_received");
        if (!peer_key_) return false;  // closes: connection_lost fails the handshake
        auto* stream = dynamic_cast<asyncio::Protocol*>(app_.get());
        return stream != nullptr && stream->eof_received();
    }
    void connection_lost(std::exception_ptr error) override {
        events.push_back("connection_lost");
        below_ = nullptr;
        if (peer_key_) {
            app_->connection_lost(error);
            return;
        }
        // Not told to the application: start_tls's caller gets the error.
        if (!ready_.done()) {
            ready_.set_exception(error ? error
                                       : std::make_exception_ptr(std::system_error(
                                             std::make_error_code(std::errc::connection_reset),
                                             "connection lost during the handshake")));
        }
    }
    void pause_writing() override { app_->pause_writing(); }
    void resume_writing() override { app_->resume_writing(); }

    // -- the transport the application uses --
    void write(std::string_view data) override { below().write(xored(data, key_)); }
    void write_eof() override { below().write_eof(); }
    bool can_write_eof() const override { return below_ != nullptr && below_->can_write_eof(); }
    void abort() override { below().abort(); }
    std::size_t get_write_buffer_size() const override {
        return below_ ? below_->get_write_buffer_size() : 0;
    }
    void set_write_buffer_limits(std::optional<std::size_t> high,
                                 std::optional<std::size_t> low) override {
        below().set_write_buffer_limits(high, low);
    }
    std::pair<std::size_t, std::size_t> get_write_buffer_limits() const override {
        return below_->get_write_buffer_limits();
    }
    bool is_reading() const override { return below_ != nullptr && below_->is_reading(); }
    void pause_reading() override {
        ++pause_reading_calls;
        below().pause_reading();
    }
    void resume_reading() override { below().resume_reading(); }
    void close() override {
        if (below_) below_->close();
    }
    bool is_closing() const override { return below_ == nullptr || below_->is_closing(); }
    void set_protocol(std::shared_ptr<asyncio::BaseProtocol> protocol) override {
        app_ = std::move(protocol);
    }
    std::shared_ptr<asyncio::BaseProtocol> get_protocol() const override { return app_; }
    std::any get_extra_info(std::string_view name) const override {
        if (name == "xor_key") return key_;
        return below_ ? below_->get_extra_info(name) : std::any{};
    }

  private:
    asyncio::Transport& below() const {
        if (below_ == nullptr) throw asyncio::RuntimeError("the layer is not connected");
        return *below_;
    }

    std::shared_ptr<asyncio::BaseProtocol> app_;
    asyncio::Transport* below_ = nullptr;
    char key_;
    bool server_side_;
    std::optional<char> peer_key_;
    asyncio::Future<> ready_;
};

}  // namespace asyncio_test
