// Integers read from parsed JSON without undefined behaviour. nlohmann's get<int64_t>() turns a float
// (1e300) or an integer outside the target type with a plain cast, which is undefined (UBSan stops on it;
// the fuzzed prepared-data reader found it). These accept only an integer that fits.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace mds {

// The value as T, or nothing when it is not an integer within T's range.
template <typename T>
std::optional<T> json_integer(const nlohmann::json& v) {
  static_assert(std::is_integral_v<T> && !std::is_same_v<T, bool>);
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<T>::max())) return std::nullopt;
    return static_cast<T>(u);
  }
  if (v.is_number_integer()) {
    const int64_t i = v.get<int64_t>();
    if constexpr (std::is_signed_v<T>) {
      if (i < static_cast<int64_t>(std::numeric_limits<T>::min()) ||
          i > static_cast<int64_t>(std::numeric_limits<T>::max()))
        return std::nullopt;
    } else {
      if (i < 0 || static_cast<uint64_t>(i) > static_cast<uint64_t>(std::numeric_limits<T>::max()))
        return std::nullopt;
    }
    return static_cast<T>(i);
  }
  return std::nullopt;
}

// object[key] as T; an Error naming `where` and the key when it is missing or not such an integer.
template <typename T>
T json_integer(const nlohmann::json& object, const char* key, const std::string& where) {
  MDS_CHECK(object.is_object() && object.contains(key), where, ": \"", key, "\" is missing");
  const nlohmann::json& v = object.at(key);
  const std::optional<T> x = json_integer<T>(v);
  MDS_CHECK(x.has_value(), where, ": \"", key, "\" must be an integer in [",
            +std::numeric_limits<T>::min(), ", ", +std::numeric_limits<T>::max(), "], got ", v.dump());
  return *x;
}

// object[key] as T, or `fallback` when the key is absent.
template <typename T>
T json_integer_or(const nlohmann::json& object, const char* key, T fallback, const std::string& where) {
  if (!object.is_object() || !object.contains(key)) return fallback;
  return json_integer<T>(object, key, where);
}

}  // namespace mds
