// Helper types for the dashboard schema check (dashboards/schema_check/emit.py). Hand-written,
// committed; the generated files in build/ import them as "pcmm-schema-check" (tsconfig paths).
//
// What is checked, per dashboard file: the whole JSON is assigned to `Json<DashboardModel>`, a
// subtype of @grafana/schema's `Dashboard` (asserted below), and every panel is additionally
// checked (`satisfies`) against `PanelWith<Options, FieldConfig>` built from its panel plugin's
// generated config types (@grafana/schema/dist/esm/raw/composable/<panel>/panelcfg/x/...).
// Object literals get TypeScript's excess-property check, so an unknown or misspelt key fails
// as well as a wrong type or a missing required key.

import type {
  AnnotationContainer,
  AnnotationQuery,
  AnnotationTarget,
  Dashboard,
  DataQuery,
  FieldConfig,
  FieldConfigSource,
  Panel,
  RowPanel,
} from "@grafana/schema";

/**
 * `T` as it is written in a JSON file: every string enum replaced by the union of its values.
 *
 * Grafana's generated types use TypeScript enums (`MappingType`, `ThresholdsMode`,
 * `GraphDrawStyle`, `BigValueColorMode`, ...). A string enum is nominal: the JSON literal
 * "absolute" is not assignable to `ThresholdsMode.Absolute`, although it is the very value the
 * enum member stands for at run time. `Json<T>` walks `T` and replaces each string enum type
 * `E` by the template literal type `${E}`, which TypeScript evaluates to the union of the
 * member values ("absolute" | "percentage"). That is sound in both directions: a JSON value is
 * accepted exactly when it equals one of the enum's values (a typo, or a value of another enum,
 * still fails), and nothing else in `T` changes: required and optional properties, arrays,
 * literal unions, `Record`s, `unknown` and index signatures are mapped as they are.
 * Numeric enums (`VariableRefresh`, `DashboardCursorSync`, ...) are left alone: TypeScript
 * (5.0 and later) already accepts a number literal for a numeric enum only when it is one of
 * the enum's values.
 */
export type Json<T> = 0 extends 1 & T
  ? T // `any`: nothing to map
  : T extends string
    ? `${T}`
    : T extends number | boolean | bigint | symbol | null | undefined
      ? T
      : T extends ReadonlyArray<infer E>
        ? Array<Json<E>>
        : T extends object
          ? { [K in keyof T]: Json<T[K]> }
          : T;

/**
 * The InfluxQL query of a panel target or an annotation: the fields of Grafana's own
 * `InfluxQuery` (public/app/plugins/datasource/influxdb/types.ts, Grafana 11.3) that raw
 * InfluxQL uses. @grafana/schema has no InfluxDB query type; its `DataQuery` is the base every
 * datasource extends, so this is a subtype of it (asserted below) and unknown keys still fail.
 */
export interface InfluxQuery extends DataQuery {
  query?: string;
  rawQuery?: boolean;
  alias?: string;
  resultFormat?: "time_series" | "table" | "logs";
  // InfluxQL annotations: Grafana's InfluxDB datasource maps result columns to the annotation
  // by these names, and only for targets marked fromAnnotations (its annotation editor sets it).
  fromAnnotations?: boolean;
  textEditor?: boolean;
  titleColumn?: string;
  textColumn?: string;
  tagsColumn?: string;
  timeEndColumn?: string;
}

/**
 * The target of an annotation query on Grafana's own annotation store (the "-- Grafana --"
 * datasource, "filter by tags"): the schema's raw `AnnotationTarget`, as a `DataQuery`.
 */
export type GrafanaAnnotationTarget = DataQuery & AnnotationTarget;

/**
 * `Dashboard` whose annotation targets are InfluxQL or Grafana annotation queries rather than
 * any `DataQuery`; a subtype of `Dashboard` (asserted below).
 */
export type DashboardModel = Omit<Dashboard, "annotations"> & {
  annotations?: Omit<AnnotationContainer, "list"> & {
    list?: Array<AnnotationQuery<InfluxQuery> | AnnotationQuery<GrafanaAnnotationTarget>>;
  };
};

/**
 * A panel whose `options` are its plugin's `Options` and whose `fieldConfig.defaults.custom`
 * is its plugin's `FieldConfig`; targets are InfluxQL queries. For a plugin without a
 * FieldConfig type (stat, for instance) `Custom` stays the generic record of `Panel`.
 */
export type PanelWith<Options, Custom = Record<string, unknown>> = Json<
  Omit<Panel, "options" | "fieldConfig" | "targets"> & {
    options?: Options;
    fieldConfig?: Omit<FieldConfigSource, "defaults"> & {
      defaults: Omit<FieldConfig, "custom"> & { custom?: Custom };
    };
    targets?: InfluxQuery[];
  }
>;

// The refinements above only narrow Grafana's types: a value of each is a value of the
// original, so a file that passes is a valid `Dashboard` (and each panel a valid `Panel`).
type Assert<T extends true> = T;
type IsSubtype<A, B> = [A] extends [B] ? true : false;
export type Checks = [
  Assert<IsSubtype<Json<DashboardModel>, Json<Dashboard>>>,
  Assert<IsSubtype<InfluxQuery, DataQuery>>,
  Assert<IsSubtype<GrafanaAnnotationTarget, DataQuery>>,
  Assert<IsSubtype<PanelWith<{ legend: { showLegend: boolean } }>, Json<Panel | RowPanel>>>,
];
