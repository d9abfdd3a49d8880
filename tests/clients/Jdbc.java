// pgJDBC (Debian's libpostgresql-jdbc-java), unchanged, against
// `shelfline sql-server`: the tables and columns its DatabaseMetaData
// reports, and a PreparedStatement with parameters, run past pgJDBC's
// threshold for server-side prepared statements.
//
//     java -cp postgresql.jar Jdbc.java HOST PORT USER PASSWORD
//
// Exits non-zero with the failed check's message.

import java.math.BigDecimal;
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.Statement;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeSet;

public class Jdbc {
    static void check(boolean ok, String what) {
        if (!ok) {
            throw new AssertionError(what);
        }
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://" + args[0] + ":" + args[1] + "/shelfline";
        Properties login = new Properties();
        login.setProperty("user", args[2]);
        login.setProperty("password", args[3]);
        try (Connection connection = DriverManager.getConnection(url, login)) {
            DatabaseMetaData meta = connection.getMetaData();
            TreeSet<String> tables = new TreeSet<>();
            try (ResultSet rs = meta.getTables(null, null, "%", new String[] {"TABLE", "VIEW"})) {
                while (rs.next()) {
                    tables.add(rs.getString("TABLE_NAME"));
                }
            }
            check(tables.containsAll(List.of("weekly_sales_inventory", "store", "product", "calendar")),
                "getTables: " + tables);

            Map<String, String> columns = new HashMap<>();
            try (ResultSet rs = meta.getColumns(null, null, "weekly_sales_inventory", "%")) {
                while (rs.next()) {
                    columns.put(rs.getString("COLUMN_NAME"), rs.getString("TYPE_NAME"));
                }
            }
            check(columns.size() == 20, "getColumns: " + columns);
            Map<String, String> kinds = Map.of(
                "yr_num", "int4",
                "total_sales_amt", "numeric",
                "avg_sales_price", "float8",
                "eow_date", "date");
            for (Map.Entry<String, String> kind : kinds.entrySet()) {
                check(kind.getValue().equals(columns.get(kind.getKey())),
                    kind.getKey() + " is " + columns.get(kind.getKey()) + ", not " + kind.getValue());
            }

            int store;
            String literal;
            try (Statement statement = connection.createStatement()) {
                try (ResultSet rs = statement.executeQuery(
                        "SELECT min(store_key) FROM weekly_sales_inventory")) {
                    rs.next();
                    store = rs.getInt(1);
                }
                try (ResultSet rs = statement.executeQuery(
                        "SELECT count(*), sum(total_sales_amt) FROM weekly_sales_inventory"
                            + " WHERE store_key = " + store + " AND total_sales_amt >= 1.00")) {
                    rs.next();
                    literal = rs.getLong(1) + " " + rs.getBigDecimal(2);
                }
            }
            try (PreparedStatement prepared = connection.prepareStatement(
                    "SELECT count(*), sum(total_sales_amt) FROM weekly_sales_inventory"
                        + " WHERE store_key = ? AND total_sales_amt >= ?")) {
                for (int run = 1; run <= 7; run++) {
                    prepared.setInt(1, store);
                    prepared.setBigDecimal(2, new BigDecimal("1.00"));
                    try (ResultSet rs = prepared.executeQuery()) {
                        rs.next();
                        String bound = rs.getLong(1) + " " + rs.getBigDecimal(2);
                        check(bound.equals(literal), "run " + run + ": " + bound + " != " + literal);
                    }
                }
            }
            System.out.println("jdbc: " + tables + "; prepared " + literal);
        }
    }
}
