package main

import (
	"encoding/json"
)

// A user's JSON body, as the HTTP edge reads it: the members of the
// object (httpio.go) decoded into userFields, with every problem named.

// maxUnknownFieldsReported bounds the errors an attacker can make us echo.
const maxUnknownFieldsReported = 10

// parseUserFields decodes the members of a JSON object into userFields,
// reporting unknown fields, wrong types and nulls where null is not allowed.
func parseUserFields(members []jsonMember) (userFields, fieldErrors) {
	var f userFields
	var errs fieldErrors
	unknown := 0
	for _, m := range members {
		switch m.Name {
		case "username":
			f.Username = decodeString(m, &errs)
		case "email":
			f.Email = decodeString(m, &errs)
		case "password":
			f.Password = decodeString(m, &errs)
		case "full_name":
			f.HasFullName = true
			if !m.isNull() {
				f.FullName = decodeString(m, &errs)
			}
		case "role":
			f.Role = decodeString(m, &errs)
		case "is_active":
			f.IsActive = decodeBool(m, &errs)
		case "current_password":
			f.CurrentPassword = decodeString(m, &errs)
		case "id":
			f.ReadOnly = append(f.ReadOnly, m.Name)
			f.ID = decodeID(m, &errs)
		case "created_at", "updated_at":
			f.ReadOnly = append(f.ReadOnly, m.Name)
			decodeString(m, &errs)
		default:
			if unknown++; unknown <= maxUnknownFieldsReported {
				errs.add(fieldName(m.Name), "is not a known field")
			}
		}
	}
	return f, errs
}

// decodeID decodes a user id: a positive integer.
func decodeID(m jsonMember, errs *fieldErrors) *int64 {
	id, ok := parsePositiveInt(string(m.Value))
	if !ok {
		errs.add(m.Name, "must be a positive integer")
		return nil
	}
	return &id
}

func decodeString(m jsonMember, errs *fieldErrors) *string {
	if m.isNull() {
		errs.add(m.Name, "must not be null")
		return nil
	}
	var s string
	if err := json.Unmarshal(m.Value, &s); err != nil {
		errs.add(m.Name, "must be a string")
		return nil
	}
	return &s
}

func decodeBool(m jsonMember, errs *fieldErrors) *bool {
	if m.isNull() {
		errs.add(m.Name, "must not be null")
		return nil
	}
	var b bool
	if err := json.Unmarshal(m.Value, &b); err != nil {
		errs.add(m.Name, "must be true or false")
		return nil
	}
	return &b
}
