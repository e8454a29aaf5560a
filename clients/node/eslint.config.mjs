// Lint: typescript-eslint's type-checked recommended rules over the packages, the example app
// and the tests (generated code and build output excluded).
import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["**/dist/**", "**/gen/**", "**/node_modules/**", "proto-vendor/**"] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // node:test's describe() and it() return promises the runner tracks itself.
      "@typescript-eslint/no-floating-promises": [
        "error",
        { allowForKnownSafeCalls: [{ from: "package", package: "node:test", name: ["describe", "it", "test"] }] },
      ],
      "@typescript-eslint/consistent-type-imports": ["error", { fixStyle: "inline-type-imports" }],
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_" }],
    },
  },
  {
    // Bull's Queue<T = any> and Job<T = any>, which the guide's code relies on (job.data
    // destructured untyped), and the guide's own snippets in the example app.
    files: ["packages/nestjs/src/**", "examples/**", "test/src/nest*.ts"],
    rules: {
      "@typescript-eslint/no-explicit-any": "off",
      "@typescript-eslint/no-unsafe-argument": "off",
      "@typescript-eslint/no-unsafe-assignment": "off",
      "@typescript-eslint/no-unsafe-member-access": "off",
      "@typescript-eslint/no-unsafe-return": "off",
    },
  },
  {
    // The guide's snippets as they are (an unused destructured field), and stand-in services
    // that keep the async signatures of the real ones.
    files: ["examples/**"],
    rules: { "@typescript-eslint/require-await": "off", "@typescript-eslint/no-unused-vars": "off" },
  },
  {
    files: ["**/*.mjs"],
    extends: [tseslint.configs.disableTypeChecked],
    languageOptions: {
      parserOptions: { projectService: false, project: false },
      globals: { console: "readonly", process: "readonly", Buffer: "readonly" },
    },
  },
);
