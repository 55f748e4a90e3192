module usersvc/tools/scimcheck

go 1.26

require github.com/elimity-com/scim v0.0.0-20260728105928-2641426a1539

require github.com/q-uint/xsd-datetime v1.0.0 // indirect
