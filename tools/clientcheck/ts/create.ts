// Type-checked against the types openapi-typescript makes from
// openapi.json with its defaults (schema.d.ts, written by run.sh).
import type { components, paths } from "./schema";

type CreateUser = components["schemas"]["CreateUser"];
type User = components["schemas"]["User"];

// A create needs only the three members; role, is_active and full_name
// have defaults on the server.
export const create: CreateUser = {
  username: "ada",
  email: "ada@example.com",
  password: "correct horse battery",
};

// @ts-expect-error: the password is required.
export const incomplete: CreateUser = { username: "ada", email: "ada@example.com" };

// What GET answers is what PUT takes back, with the full name cleared.
type Got = paths["/api/v1/users/{id}"]["get"]["responses"][200]["content"]["application/json"];
type PutBody = paths["/api/v1/users/{id}"]["put"]["requestBody"]["content"]["application/json"];
export function sendBack(user: Got, email: string): PutBody {
  const changed: User = { ...user, email, full_name: null };
  return changed;
}

// Query parameters are numbers.
type ListQuery = NonNullable<paths["/api/v1/users"]["get"]["parameters"]["query"]>;
export const firstPage: ListQuery = { page: 1, per_page: 20 };
