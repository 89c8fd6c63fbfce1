// The form generated from a recipe's input-config schema. Model fields pick from the
// registry; every other field gets the control its JSON Schema type calls for. An empty
// control shows the recipe's default as its placeholder, and the run receives that default.
import { defaultText, emptyFieldNote, initialValue, type ConfigProblem, type FormField, type FormValue } from "../../lib/schema-form";
import { spawnableModels, useRegistry } from "../../stores/registry";

interface Props {
  fields: FormField[];
  values: Record<string, FormValue>;
  problems: ConfigProblem[];
  onChange(field: string, value: FormValue): void;
}

/** Placeholder of an empty control: the default the run will use, or what is missing. */
function placeholderOf(field: FormField): string {
  const display = defaultText(field);
  if (display !== null) return display;
  return field.required ? "required" : "recipe default";
}

/** Label of a picker's empty option, which means the default, as an empty text field does. */
function emptyOptionLabel(field: FormField, prompt: string): string {
  const display = defaultText(field);
  return display === null ? prompt : `default (${display})`;
}

function FieldControl({ field, value, onChange }: { field: FormField; value: FormValue; onChange(value: FormValue): void }) {
  const models = useRegistry((state) => state.models);
  const id = `config-${field.name}`;
  const common = { id, "data-testid": id, name: field.name };

  switch (field.kind) {
    case "boolean":
      return <input {...common} type="checkbox" checked={value === true} onChange={(event) => onChange(event.target.checked)} />;
    case "model": {
      const keys = spawnableModels(models).map((model) => model.key);
      const current = String(value);
      return (
        <select {...common} value={current} onChange={(event) => onChange(event.target.value)}>
          <option value="">{emptyOptionLabel(field, "Pick a model…")}</option>
          {current && !keys.includes(current) && <option value={current}>{current} (not registered)</option>}
          {keys.map((key) => (
            <option key={key} value={key}>
              {key}
            </option>
          ))}
        </select>
      );
    }
    case "enum":
      return (
        <select {...common} value={String(value)} onChange={(event) => onChange(event.target.value)}>
          <option value="">{emptyOptionLabel(field, "Pick one…")}</option>
          {field.enumValues.map((option, index) => (
            <option key={index} value={String(index)}>
              {String(option)}
            </option>
          ))}
        </select>
      );
    case "json":
      return <textarea {...common} rows={3} placeholder={placeholderOf(field)} value={String(value)} onChange={(event) => onChange(event.target.value)} />;
    case "integer":
    case "number":
      // A text input, not type="number": Chromium reports "" for text it cannot parse, such as
      // "1e", which would read as empty and send the default while the field shows "1e".
      return (
        <input
          {...common}
          type="text"
          inputMode={field.kind === "integer" ? "numeric" : "decimal"}
          placeholder={placeholderOf(field)}
          value={String(value)}
          onChange={(event) => onChange(event.target.value)}
        />
      );
    default:
      return <input {...common} type="text" placeholder={placeholderOf(field)} value={String(value)} onChange={(event) => onChange(event.target.value)} />;
  }
}

export function ConfigForm({ fields, values, problems, onChange }: Props) {
  if (fields.length === 0) return <p className="muted">This recipe takes no config.</p>;
  return (
    <div className="config-form" data-testid="config-form">
      {fields.map((field) => {
        const problem = problems.find((entry) => entry.field === field.name);
        const value = values[field.name] ?? initialValue(field);
        return (
          <div key={field.name} className={problem ? "form-row invalid" : "form-row"}>
            <label htmlFor={`config-${field.name}`}>
              {field.title}
              {field.required && <span className="required"> *</span>}
            </label>
            <FieldControl field={field} value={value} onChange={(next) => onChange(field.name, next)} />
            {field.description && <span className="hint">{field.description}</span>}
            {value === "" && (
              <span className="hint empty-note" data-testid={`config-empty-note-${field.name}`}>
                {emptyFieldNote(field)}
              </span>
            )}
            {problem && (
              <span className="problem" data-testid="config-problem">
                {field.name} {problem.message}
              </span>
            )}
          </div>
        );
      })}
    </div>
  );
}
