# frozen_string_literal: true
#
# batchless migration shim (issue 19). batchless's own buildspec (infra/migration/buildspec.yml,
# rendered by start-migration-build) writes this file into the build's checkout as
# lib/tasks/batchless_migration.rake; the app's repository is never changed. It adds:
#
#   bin/rails batchless:preflight   the pending migrations, the SQL each runs (recorded on a
#                                   scratch database built from production's current schema),
#                                   the lint findings and the policy's gate -> preflight.json
#   bin/rails db:migrate            unchanged, plus: lock_timeout / statement_timeout on the
#                                   session, lock timeouts retried with backoff, per-migration
#                                   duration, and the failing migration's statement and PG
#                                   error -> migrate.json
#
# Both files go to $BATCHLESS_OUTPUT_DIR, uploaded next to the log (the buildspec's artifacts).
# Pre-flight never locks or changes a production table: on production it reads only the
# catalog (the schema dumper's queries), schema_migrations and pg_class.reltuples.

require "json"
require "digest"
require "uri"
require "stringio"

module BatchlessMigration
  VOLATILE = %w[random gen_random_uuid uuid_generate_v1 uuid_generate_v1mc uuid_generate_v4
                clock_timestamp timeofday nextval txid_current].freeze

  RECIPES = {
    "index-not-concurrent" => "add `disable_ddl_transaction!` and `add_index ..., algorithm: :concurrently` " \
                              "(CREATE INDEX takes a SHARE lock: writes to the table wait until it is built)",
    "volatile-default" => "add the column without a default, set the default in a second step, " \
                          "backfill existing rows in batches outside the migration",
    "column-type-change" => "add a new column, write both, backfill in batches, switch reads, " \
                            "then drop the old column (a type change rewrites the table under an ACCESS EXCLUSIVE lock)",
    "rename" => "add the new column/table, write both, backfill, move reads, drop the old one " \
                "in a later release (the running code still uses the old name)",
    "remove-column-still-read" => "first deploy `self.ignored_columns = [\"<column>\"]` on the model, " \
                                  "then remove the column in a later release",
    "constraint-validated" => "add it with `validate: false` (NOT VALID), then " \
                              "`validate_foreign_key` / `validate_check_constraint` in a later migration",
    "not-null-direct" => "add a check constraint `<column> IS NOT NULL` with `validate: false`, validate it " \
                         "in a later migration, then `change_column_null` (PostgreSQL 12+ uses the valid constraint)",
    "raw-sql-unreadable" => "use the migration DSL, or keep each `execute` to one plain statement the lint can read",
    "ddl-with-data" => "move the data change to its own migration (or a job) that runs in batches, " \
                       "outside the schema change's transaction"
  }.freeze

  module_function

  def out_dir
    dir = ENV.fetch("BATCHLESS_OUTPUT_DIR", File.join(Dir.pwd, "tmp", "batchless"))
    FileUtils.mkdir_p(dir)
    dir
  end

  def write(name, doc)
    File.write(File.join(out_dir, name), JSON.pretty_generate(doc))
  end

  def redact(text)
    text.to_s.gsub(%r{(://[^:/@\s]*:)[^@\s]*@}, '\1[REDACTED]@')
  end

  def ms_since(t0)
    ((Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0) * 1000).round
  end

  def now
    Process.clock_gettime(Process::CLOCK_MONOTONIC)
  end

  def policy
    p = ENV.fetch("BATCHLESS_MIGRATION_POLICY", "report")
    %w[report require-approval].include?(p) ? p : "require-approval"
  end

  def conn
    ActiveRecord::Base.connection
  end

  # The table a statement touches (for findings and lock waits).
  def table_of(sql)
    s = sql.to_s
    pats = [
      /\bALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?"?([\w.]+)"?/i,
      /\bINDEX\b.*?\bON\s+(?:ONLY\s+)?"?([\w.]+)"?/im,
      /\bLOCK\s+(?:TABLE\s+)?"?([\w.]+)"?/i,
      /\bDROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?"?([\w.]+)"?/i,
      /\bUPDATE\s+"?([\w.]+)"?/i,
      /\bINSERT\s+INTO\s+"?([\w.]+)"?/i,
      /\bDELETE\s+FROM\s+"?([\w.]+)"?/i,
      /\bCREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?"?([\w.]+)"?/i
    ]
    pats.each { |re| (m = s.match(re)) && (return m[1].split(".").last) }
    nil
  end

  def pending_proxies
    ctx = conn.migration_context
    applied = ctx.get_all_versions
    [ctx.migrations.reject { |m| applied.include?(m.version) }, applied]
  end

  def describe(proxy)
    file = proxy.filename
    {
      "version" => proxy.version.to_s,
      "class" => proxy.name,
      "file" => file.sub(%r{\A#{Regexp.escape(Dir.pwd)}/}, ""),
      "disablesDdlTransaction" => proxy.disable_ddl_transaction ? true : false,
      "sha256" => Digest::SHA256.file(file).hexdigest
    }
  end

  # Migrations run by the Migrator pass through here: which one is running, and (for db:migrate)
  # the lock-timeout retries, timings and the failure.
  module MigratorHook
    def execute_migration_in_transaction(migration)
      hook = BatchlessMigration.current_hook
      return super unless hook

      hook.call(migration) { super(migration) }
    end
  end

  class << self
    attr_accessor :current_hook, :lock_free
  end

  # PostgreSQL's deparse functions (`pg_get_expr(expr, relid)`, `pg_get_indexdef`) take an
  # ACCESS SHARE lock on the table. While pre-flight dumps production's schema these two
  # catalog reads avoid them: defaults deparsed without the relation (no column references
  # in a default; generated columns are left out), indexes rebuilt from pg_index's columns
  # (expression and partial indexes cannot be read without the lock: left out and listed).
  module LockFreeCatalog
    def column_definitions(table_name)
      return super unless BatchlessMigration.lock_free

      query(<<~SQL, "SCHEMA")
        SELECT a.attname, format_type(a.atttypid, a.atttypmod),
               CASE WHEN a.attgenerated = '' THEN pg_get_expr(d.adbin, 0) END, a.attnotnull, a.atttypid, a.atttypmod,
               c.collname, col_description(a.attrelid, a.attnum) AS comment
          FROM pg_attribute a
          LEFT JOIN pg_attrdef d ON a.attrelid = d.adrelid AND a.attnum = d.adnum
          LEFT JOIN pg_type t ON a.atttypid = t.oid
          LEFT JOIN pg_collation c ON a.attcollation = c.oid AND a.attcollation <> t.typcollation
         WHERE a.attrelid = #{quote(quote_table_name(table_name))}::regclass
           AND a.attnum > 0 AND NOT a.attisdropped
         ORDER BY a.attnum
      SQL
    end

    def indexes(table_name)
      return super unless BatchlessMigration.lock_free

      rows = query(<<~SQL, "SCHEMA")
        SELECT i.relname, d.indisunique::text, d.indkey::text, am.amname,
               (d.indexprs IS NOT NULL OR d.indpred IS NOT NULL)::text, t.oid
          FROM pg_index d
          JOIN pg_class i ON i.oid = d.indexrelid
          JOIN pg_class t ON t.oid = d.indrelid
          JOIN pg_am am ON am.oid = i.relam
         WHERE d.indrelid = #{quote(quote_table_name(table_name))}::regclass AND NOT d.indisprimary
         ORDER BY i.relname
      SQL
      rows.filter_map do |name, unique, indkey, using, partial, oid|
        if partial == "true"
          (BatchlessMigration.unseen_indexes ||= []) << "#{table_name}.#{name}"
          next
        end
        names = query(<<~SQL, "SCHEMA").to_h
          SELECT attnum::text, attname FROM pg_attribute WHERE attrelid = #{oid.to_i}
        SQL
        cols = indkey.split(" ").map { |k| names[k] }
        next if cols.any?(&:nil?)

        ActiveRecord::ConnectionAdapters::IndexDefinition.new(
          table_name, name, unique == "true", cols, using: using.to_sym
        )
      end
    end
  end

  class << self
    attr_accessor :unseen_indexes
  end

  # ------------------------------------------------------------------------------ pre-flight

  def preflight!
    t0 = now
    doc = { "version" => 1, "approach" => "scratch-database", "policy" => policy,
            "pending" => [], "findings" => [], "error" => nil }
    begin
      conn.execute("SET application_name = 'batchless-preflight'")
      conn.execute("SET lock_timeout = '2s'")
      pending, applied = pending_proxies
      doc["pending"] = pending.map { |p| describe(p) }
      doc["digest"] = Digest::SHA256.hexdigest(doc["pending"].map { |m| "#{m['version']}:#{m['sha256']}" }.join("\n"))
      unless pending.empty?
        rows = row_estimates
        models = model_columns
        schema = StringIO.new
        ActiveRecord::ConnectionAdapters::PostgreSQLAdapter.prepend(LockFreeCatalog)
        BatchlessMigration.lock_free = true
        begin
          ActiveRecord::SchemaDumper.dump(conn, schema)
        ensure
          BatchlessMigration.lock_free = false
        end
        doc["unseenIndexes"] = BatchlessMigration.unseen_indexes || []
        existing = conn.tables
        record_on_scratch(schema.string, applied, pending, doc)
        doc["findings"] = lint(doc["pending"], existing, rows, models)
      end
    rescue StandardError => e
      doc["error"] = redact("#{e.class}: #{e.message}")[0, 2000]
    end
    approved = ENV.fetch("BATCHLESS_MIGRATION_APPROVED_DIGEST", "")
    doc["gate"] =
      if doc["error"] then (policy == "require-approval" ? "preflight-failed" : "reported")
      elsif doc["findings"].empty? then "pass"
      elsif policy == "report" then "reported"
      elsif !approved.empty? && approved == doc["digest"] then "approved"
      else "needs-approval"
      end
    doc["durationMs"] = ms_since(t0)
    write("preflight.json", doc)
    print_summary(doc)
    exit(3) if %w[needs-approval preflight-failed].include?(doc["gate"])
  end

  def print_summary(doc)
    puts "batchless pre-flight: #{doc['pending'].size} pending, #{doc['findings'].size} finding(s), " \
         "policy #{doc['policy']}, gate #{doc['gate']} (#{doc['durationMs']} ms)"
    doc["pending"].each do |m|
      puts "  pending #{m['version']} #{m['class']} #{m['file']}#{m['disablesDdlTransaction'] ? ' (no DDL transaction)' : ''}"
      (m["statements"] || []).each { |s| puts "    sql: #{s['sql'][0, 300].gsub(/\s+/, ' ')}" }
    end
    doc["findings"].each do |f|
      puts "  finding #{f['rule']}: #{f['class']} (#{f['file']}:#{f['line']}): #{f['message']}"
    end
    puts "  pre-flight error: #{doc['error']}" if doc["error"]
  end

  def row_estimates
    conn.select_rows(<<~SQL).to_h { |n, r| [n, r.to_f.round] }
      SELECT c.relname, c.reltuples FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY (current_schemas(false))
    SQL
  end

  # table -> {model, ignored} for every model of the commit being deployed.
  def model_columns
    Rails.application.eager_load!
    ActiveRecord::Base.descendants.each_with_object({}) do |model, acc|
      next if model.abstract_class? || !model.respond_to?(:table_name) || model.table_name.nil?

      (acc[model.table_name] ||= []) << { "model" => model.name, "ignored" => model.ignored_columns.map(&:to_s) }
    rescue StandardError
      next
    end
  end

  def scratch_url
    base = ENV["BATCHLESS_PREFLIGHT_DATABASE_URL"].to_s
    base = ENV.fetch("DATABASE_URL") if base.empty?
    name = "batchless_preflight_#{Process.pid}_#{Time.now.to_i}"
    uri = URI.parse(base)
    uri.path = "/#{name}"
    [uri.to_s, name]
  end

  def record_on_scratch(schema_rb, applied, pending, doc)
    prod_config = ActiveRecord::Base.connection_db_config
    url, name = scratch_url
    conn.create_database(name)
    begin
      ActiveRecord::Base.establish_connection(url)
      ActiveRecord::Schema.verbose = false
      ActiveRecord::Migration.verbose = false
      silence = StringIO.new
      old = $stdout
      $stdout = silence
      begin
        eval(schema_rb, TOPLEVEL_BINDING, "production-schema.rb") # rubocop:disable Security/Eval
      ensure
        $stdout = old
      end
      sm = ActiveRecord::SchemaMigration
      sm.delete_all
      applied.each { |v| sm.create!(version: v.to_s) }
      by_version = doc["pending"].to_h { |m| [m["version"], m] }
      current = nil
      files = pending.to_h { |p| [p.version.to_s, File.expand_path(p.filename)] }
      sub = ActiveSupport::Notifications.subscribe("sql.active_record") do |*, payload|
        next unless current
        next if %w[SCHEMA TRANSACTION].include?(payload[:name].to_s)
        next if payload[:name].to_s.include?("SchemaMigration")
        next if payload[:sql] =~ /\A\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE)/i

        file = files[current]
        loc = caller_locations.find { |l| l.absolute_path == file }
        raw = caller_locations.any? { |l| l.absolute_path == file && File.readlines(file)[l.lineno - 1].to_s =~ /\b(execute|exec_query|exec_update|exec_delete|exec_insert)\b/ }
        (by_version[current]["statements"] ||= []) << {
          "sql" => redact(payload[:sql])[0, 4000], "line" => loc&.lineno, "raw" => raw
        }
      end
      BatchlessMigration.current_hook = lambda do |migration, &blk|
        current = migration.version.to_s
        t = now
        begin
          blk.call
        ensure
          by_version[current]["scratchMs"] = ms_since(t)
          by_version[current]["statements"] ||= []
          current = nil
        end
      end
      begin
        ActiveRecord::Migrator.new(:up, pending, sm).migrate
      rescue StandardError => e
        doc["scratchError"] = redact("#{e.class}: #{e.message}")[0, 2000]
      ensure
        ActiveSupport::Notifications.unsubscribe(sub)
        BatchlessMigration.current_hook = nil
      end
    ensure
      ActiveRecord::Base.establish_connection(prod_config)
      begin
        conn.drop_database(name)
      rescue StandardError => e
        warn "batchless pre-flight: could not drop the scratch database #{name}: #{e.message}"
      end
    end
  end

  # ------------------------------------------------------------------------------ lint

  DML = /\A\s*(?:WITH\b.*?\)\s*)?(UPDATE|INSERT|DELETE)\b/im
  DDL = /\A\s*(CREATE|ALTER|DROP|COMMENT|TRUNCATE)\b/i
  READABLE = [
    /\A\s*CREATE\s+(UNIQUE\s+)?INDEX\b/i, /\A\s*DROP\s+INDEX\b/i, /\A\s*ALTER\s+TABLE\b/i,
    /\A\s*CREATE\s+TABLE\b/i, /\A\s*DROP\s+TABLE\b/i, /\A\s*(UPDATE|INSERT|DELETE)\b/i,
    /\A\s*SELECT\b/i, /\A\s*(CREATE|DROP)\s+EXTENSION\b/i, /\A\s*COMMENT\s+ON\b/i
  ].freeze
  DATA_CALLS = /\b(update_all|delete_all|destroy_all|update_column|update_columns|find_each|in_batches|find_in_batches|insert_all|upsert_all|\.save!?|\.create!?|\.update!?|\.destroy)\b/

  def finding(rule, mig, line, message, sql = nil)
    { "rule" => rule, "version" => mig["version"], "class" => mig["class"], "file" => mig["file"],
      "line" => line, "message" => message, "recipe" => RECIPES.fetch(rule), "sql" => sql&.slice(0, 500) }
  end

  def rows_note(rows, table)
    n = rows[table]
    n && n.positive? ? " (about #{n} rows)" : ""
  end

  def lint(pending, existing, rows, models)
    findings = []
    pending.each do |mig|
      stmts = mig["statements"] || []
      source = File.exist?(mig["file"]) ? File.readlines(mig["file"]) : []
      has_ddl = false
      has_dml = false
      stmts.each do |st|
        sql = st["sql"]
        line = st["line"]
        table = table_of(sql)
        pre_existing = table && existing.include?(table)
        if st["raw"] && (sql.include?(";") && sql.strip.chomp(";").include?(";") || READABLE.none? { |re| sql =~ re })
          findings << finding("raw-sql-unreadable", mig, line, "`execute` of SQL the lint cannot read: #{sql[0, 120].gsub(/\s+/, ' ')}", sql)
        end
        has_ddl ||= sql =~ DDL
        has_dml ||= sql =~ DML && table != "schema_migrations" && table != "ar_internal_metadata"
        if sql =~ /\A\s*CREATE\s+(UNIQUE\s+)?INDEX\b/i && sql !~ /\bCONCURRENTLY\b/i && pre_existing
          findings << finding("index-not-concurrent", mig, line, "index created without `algorithm: :concurrently` on the existing table #{table}#{rows_note(rows, table)}", sql)
        end
        if sql =~ /\A\s*ALTER\s+TABLE\b/i && pre_existing
          sql.scan(/\bADD\s+(?:COLUMN\s+)?"?(\w+)"?\s+(.*?)(?=,\s*ADD\b|\z)/im).each do |col, rest|
            next if col =~ /\A(CONSTRAINT|CHECK|FOREIGN|PRIMARY|UNIQUE)\z/i

            fns = rest.scan(/\b(\w+)\s*\(/).flatten.map(&:downcase)
            if (fns & VOLATILE).any? || rest =~ /\b(big|small)?serial\b/i || rest =~ /\bGENERATED\s+ALWAYS\s+AS\b.*\bSTORED\b/im
              findings << finding("volatile-default", mig, line, "column #{table}.#{col} added with a volatile default (#{(fns & VOLATILE).first || 'serial/generated'}): every row is rewritten#{rows_note(rows, table)}", sql)
            end
          end
          if sql =~ /\bALTER\s+(?:COLUMN\s+)?"?(\w+)"?\s+(SET\s+DATA\s+)?TYPE\b/i
            findings << finding("column-type-change", mig, line, "column #{table}.#{Regexp.last_match(1)} changes type", sql)
          end
          if sql =~ /\bRENAME\s+(?:COLUMN\s+)?"?(\w+)"?\s+TO\s+"?(\w+)"?/i
            findings << finding("rename", mig, line, "column #{table}.#{Regexp.last_match(1)} renamed to #{Regexp.last_match(2)}", sql)
          elsif sql =~ /\bRENAME\s+TO\s+"?(\w+)"?/i
            findings << finding("rename", mig, line, "table #{table} renamed to #{Regexp.last_match(1)}", sql)
          end
          sql.scan(/\bDROP\s+(?:COLUMN\s+)?(?:IF\s+EXISTS\s+)?"?(\w+)"?/i).flatten.each do |col|
            next if col =~ /\A(CONSTRAINT|DEFAULT|NOT)\z/i

            (models[table] || []).each do |m|
              next if m["ignored"].include?(col)

              findings << finding("remove-column-still-read", mig, line, "column #{table}.#{col} removed while #{m['model']} still reads it (not in its ignored_columns)", sql)
            end
          end
          if (m = sql.match(/\bADD\s+(?:CONSTRAINT\s+"?\w+"?\s+)?(FOREIGN\s+KEY|CHECK)\b/i)) && sql !~ /\bNOT\s+VALID\b/i
            findings << finding("constraint-validated", mig, line, "#{m[1].upcase.gsub(/\s+/, ' ')} constraint on #{table} added and validated at once#{rows_note(rows, table)}", sql)
          end
          if sql =~ /\bALTER\s+(?:COLUMN\s+)?"?(\w+)"?\s+SET\s+NOT\s+NULL\b/i
            findings << finding("not-null-direct", mig, line, "NOT NULL set directly on #{table}.#{Regexp.last_match(1)}: a full scan under an ACCESS EXCLUSIVE lock#{rows_note(rows, table)}", sql)
          end
        end
      end
      # Raw SQL lines that recorded nothing (behind a condition the scratch database did not meet).
      source.each_with_index do |text, i|
        next unless text =~ /^\s*[^#]*\b(execute|exec_query)\b/
        next if stmts.any? { |s| s["line"] == i + 1 }

        findings << finding("raw-sql-unreadable", mig, i + 1, "`execute` that ran no SQL in pre-flight (conditional or data-dependent): the lint could not read it")
      end
      data_line = source.each_index.find { |i| source[i] =~ DATA_CALLS && source[i] !~ /^\s*#/ }
      if has_ddl && (has_dml || data_line)
        line = data_line ? data_line + 1 : stmts.find { |s| s["sql"] =~ DML }&.dig("line")
        findings << finding("ddl-with-data", mig, line, "the migration changes the schema and data in one go")
      end
    end
    findings
  end

  # ------------------------------------------------------------------------------ db:migrate

  def install_migrate_hooks!
    lock_timeout = ENV.fetch("BATCHLESS_LOCK_TIMEOUT", "5s")
    statement_timeout = ENV.fetch("BATCHLESS_STATEMENT_TIMEOUT", "30min")
    retries = Integer(ENV.fetch("BATCHLESS_LOCK_RETRIES", "3"))
    backoff = Float(ENV.fetch("BATCHLESS_LOCK_RETRY_BACKOFF_SECONDS", "2"))
    doc = { "version" => 1, "lockTimeout" => lock_timeout, "statementTimeout" => statement_timeout,
            "lockRetries" => retries, "migrations" => [], "failure" => nil }
    # Per migration (db:migrate re-establishes the connection after this task ran).
    session = lambda do
      c = conn
      c.execute("SET application_name = 'batchless-migrate'")
      c.execute("SET lock_timeout = #{c.quote(lock_timeout)}")
      c.execute("SET statement_timeout = #{c.quote(statement_timeout)}")
    end
    puts "batchless: lock_timeout #{lock_timeout}, statement_timeout #{statement_timeout}, " \
         "lock-timeout retries #{retries} (backoff #{backoff}s, doubling)"
    last_sql = nil
    ActiveSupport::Notifications.subscribe("sql.active_record") do |*, payload|
      next if %w[SCHEMA TRANSACTION].include?(payload[:name].to_s)

      last_sql = payload[:sql]
    end
    at_exit { write("migrate.json", doc) }
    BatchlessMigration.current_hook = lambda do |migration, &blk|
      entry = { "version" => migration.version.to_s, "class" => migration.name,
                "file" => migration.filename.to_s.sub(%r{\A#{Regexp.escape(Dir.pwd)}/}, ""),
                "status" => "running", "attempts" => [] }
      doc["migrations"] << entry
      t = now
      attempt = 0
      begin
        attempt += 1
        ta = now
        session.call
        last_sql = nil
        blk.call
        entry["status"] = "succeeded"
      rescue StandardError => e
        inner = BatchlessMigration.unwrap(e)
        sql = inner.respond_to?(:sql) && inner.sql ? inner.sql : last_sql
        unless inner.is_a?(ActiveRecord::LockWaitTimeout)
          entry["status"] = "failed"
          doc["failure"] = failure(migration, sql, inner)
          puts "batchless: #{migration.version} #{migration.name} failed: #{doc['failure']['pgError'].lines.first}"
          raise
        end
        table = table_of(sql)
        wait = { "attempt" => attempt, "waitedMs" => ms_since(ta), "table" => table,
                 "statement" => redact(sql.to_s)[0, 1000], "error" => first_line(inner), "blockers" => blockers(table) }
        entry["attempts"] << wait
        transactional = !migration.disable_ddl_transaction
        if transactional && attempt <= retries
          pause = [backoff * (2**(attempt - 1)), 60].min
          puts "batchless: #{migration.version} #{migration.name} timed out waiting for a lock on " \
               "#{table || '(unknown table)'} (attempt #{attempt}); retrying in #{pause}s"
          sleep(pause)
          retry
        end
        entry["status"] = "failed"
        held = wait["blockers"].map { |b| "pid #{b['pid']} (#{b['mode']}#{b['application'].empty? ? '' : ", #{b['application']}"})" }
        doc["failure"] = failure(migration, sql, inner).merge(
          "lockTimeout" => true, "table" => table, "attempts" => attempt,
          "message" => "#{migration.version} #{migration.name} gave up after #{attempt} attempt(s) " \
                       "waiting for a lock on table #{table || '(unknown)'} (lock_timeout #{lock_timeout})" +
                       (held.empty? ? "" : "; held by #{held.join(', ')}")
        )
        puts "batchless: #{doc['failure']['message']}"
        raise
      ensure
        entry["durationMs"] = ms_since(t)
        entry["lockWaitMs"] = entry["attempts"].sum { |a| a["waitedMs"] }
        entry["retries"] = [entry["attempts"].size - (entry["status"] == "failed" ? 1 : 0), 0].max
      end
    end
  end

  def unwrap(e)
    cur = e
    8.times do
      return cur if cur.is_a?(ActiveRecord::ActiveRecordError)
      break unless cur.cause

      cur = cur.cause
    end
    e
  end

  def first_line(e)
    redact((e.cause || e).message.to_s.lines.first.to_s.strip)[0, 500]
  end

  def failure(migration, sql, e)
    pg = e.cause
    code = pg.respond_to?(:result) && pg.result ? pg.result.error_field(PG::PG_DIAG_SQLSTATE) : nil
    { "version" => migration.version.to_s, "class" => migration.name,
      "file" => migration.filename.to_s.sub(%r{\A#{Regexp.escape(Dir.pwd)}/}, ""),
      "statement" => redact(sql.to_s)[0, 1000], "errorClass" => (pg || e).class.name,
      "pgError" => redact((pg || e).message.to_s.strip)[0, 1000], "pgCode" => code }
  end

  def blockers(table)
    return [] unless table

    ActiveRecord::Base.connection_pool.with_connection do |c|
      c.select_all(<<~SQL).to_a.map { |r| { "pid" => r["pid"], "mode" => r["mode"], "application" => r["application_name"].to_s } }
        SELECT l.pid, l.mode, a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.granted AND l.pid <> pg_backend_pid() AND l.relation = (SELECT oid FROM pg_class WHERE relname = #{c.quote(table)} LIMIT 1)
      SQL
    end
  rescue StandardError
    []
  end
end

namespace :batchless do
  desc "batchless pre-flight: pending migrations, their SQL (on a scratch database), lint, gate"
  task preflight: :environment do
    ActiveRecord::Migrator.prepend(BatchlessMigration::MigratorHook)
    BatchlessMigration.preflight!
  end

  task migrate_hooks: :environment do
    ActiveRecord::Migrator.prepend(BatchlessMigration::MigratorHook)
    BatchlessMigration.install_migrate_hooks!
  end
end

Rake::Task["db:migrate"].enhance(["batchless:migrate_hooks"]) if Rake::Task.task_defined?("db:migrate")
