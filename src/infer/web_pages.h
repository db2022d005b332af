// The pages of `moe-diffuseq serve` (web/*.html), compiled into the program by the build
// (cmake/embed_web_pages.cmake).
#pragma once

#include <string>

namespace mds::infer {

// The page web/NAME (e.g. "index.html"), or nullptr when there is none.
const char* web_page(const std::string& name);

}  // namespace mds::infer
