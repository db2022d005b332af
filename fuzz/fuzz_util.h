// What the fuzz targets share: the readers take paths, so each input becomes a file (in a directory
// of this process, under /dev/shm where it exists: no disk I/O per execution).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace mds::fuzz {

// A directory that lives as long as the process.
const std::string& scratch_dir();
// Writes `size` bytes to NAME in the scratch directory; returns its path.
std::string write_scratch(const std::string& name, const uint8_t* data, std::size_t size);

}  // namespace mds::fuzz
