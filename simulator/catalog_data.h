// The text of simulator/catalog.json (the hardware catalog), embedded at build
// time (catalog_data.cc.in) so p3d binaries work from any directory.
#pragma once

#include <string_view>

namespace p3d {

std::string_view CatalogJsonText();

}  // namespace p3d
