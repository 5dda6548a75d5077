// What the emulator's grid runner and runtime share (cuda/emu only).
#ifndef NSC_CUDA_EMU_EMU_IMPL_H
#define NSC_CUDA_EMU_EMU_IMPL_H

#include <string>

#include "cuda/emu/cuda_emu.h"

namespace nsci_emu {

// Records the error the next cudaGetLastError returns and prints why on
// stderr (the CUDA error string alone would not say which kernel or lane).
void emu_set_error(cudaError_t e, const std::string &why);
// Prints a note on stderr (something a GPU leaves undefined) without failing.
void emu_note(const std::string &what);

} // namespace nsci_emu

#endif
