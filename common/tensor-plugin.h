// The tensor half of slmctl: libslmctl-torch.so (model/, finetune/, eval/, the torch embedders and
// their subcommands), loaded on first use so that commands needing no tensors never load libtorch.
#pragma once
#include <string>

namespace slm::tensor_plugin {

/// A symbol of the tensor half: looked up in the process first (test binaries link the tensor code
/// in), else in libslmctl-torch.so beside the executable (or $SLMCTL_TORCH_PLUGIN), loaded once.
/// user_error naming the file when it cannot be loaded or lacks the symbol.
void* symbol(const char* name);

/// The same, without loading anything: nullptr unless the tensor half is already in the process.
void* symbol_if_loaded(const char* name);

/// Typed shorthand: `tensor_plugin::fn<int(int)>("slm_plugin_x")(3)`.
template <class F>
F* fn(const char* name) {
    return reinterpret_cast<F*>(symbol(name));
}

/// Where the plugin is looked for (for messages and `slmctl --version -v`).
std::string plugin_path();

}  // namespace slm::tensor_plugin
